"""Benchmark outputs: JSON results, Markdown tables with ratios to the best peer, recall–QPS plots."""
from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Recall targets of the summary table: fastest setting reaching each.
RECALL_TARGETS = (0.9, 0.95, 0.99)


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "platform": platform.platform(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}


def write_json(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def pareto(points: Sequence[dict[str, Any]], qps_key: str = "qps_batch") -> list[dict[str, Any]]:
    """Points no other point beats on both recall and QPS, by increasing recall."""
    best: list[dict[str, Any]] = []
    for p in sorted(points, key=lambda r: (-r["recall"], -r[qps_key])):
        if not best or p[qps_key] > best[-1][qps_key]:
            best.append(p)
    return best[::-1]


def best_at(records: Sequence[dict[str, Any]], target: float, qps_key: str = "qps_batch") -> dict[str, dict[str, Any]]:
    """Per algorithm: fastest point with recall ≥ target, else its highest-recall point (flagged ``below``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["algorithm"] for r in records):
        mine = [r for r in records if r["algorithm"] == name]
        good = [r for r in mine if r["recall"] >= target]
        out[name] = ({**max(good, key=lambda r: r[qps_key]), "below": False} if good else
                     {**max(mine, key=lambda r: (r["recall"], r[qps_key])), "below": True})
    return out


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return format(value, spec)


def _params(p: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items()) or "–"


def markdown_table(records: Sequence[dict[str, Any]], target: float) -> str:
    """One row per algorithm at ``target`` recall; ``× best peer`` = batch QPS / fastest peer reaching it."""
    rows = best_at(records, target)
    peers = [r["qps_batch"] for name, r in rows.items() if not name.startswith("shoal:") and not r["below"]]
    best_peer = max(peers) if peers else None
    lines = [f"Fastest setting with recall@k ≥ {target} (else the best recall reached, in *italics*).", "",
             "| algorithm | params | recall | QPS batch | QPS 1-by-1 | p50 ms | p99 ms | build s | bytes/vec "
             "| × best peer |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in sorted(rows.items(), key=lambda kv: (kv[1]["below"], -kv[1]["qps_batch"])):
        recall = f"*{r['recall']:.3f}*" if r["below"] else f"{r['recall']:.3f}"
        ratio = "–" if r["below"] or not best_peer else f"{r['qps_batch'] / best_peer:.2f}"
        lines.append(f"| {name} | {_params(r['params'])} | {recall} | {_fmt(r['qps_batch'], ',.0f')} "
                     f"| {_fmt(r['qps_single'], ',.0f')} | {_fmt(r['p50_ms'], '.3f')} | {_fmt(r['p99_ms'], '.3f')} "
                     f"| {_fmt(r['build_s'], '.2f')} | {_fmt(r['bytes_per_vector'], '.0f')} | {ratio} |")
    return "\n".join(lines)


def filtered_table(records: Sequence[dict[str, Any]]) -> str:
    """Recall and batch QPS per method (columns) and selectivity (rows)."""
    names = list(dict.fromkeys(r["algorithm"] for r in records))
    sels = sorted({r["selectivity"] for r in records})
    cell = {(r["algorithm"], r["selectivity"]): r for r in records}
    rows = {r["selectivity"]: r["matching"] for r in records}
    lines = ["| selectivity | rows | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    for s in sels:
        parts = [f"{rows[s]:,}"]
        for name in names:
            r = cell.get((name, s))
            parts.append("–" if r is None else f"{r['recall']:.3f} @ {r['qps_batch']:,.0f}")
        lines.append(f"| {s * 100:g}% | " + " | ".join(parts) + " |")
    return "recall@k @ QPS (batch)\n\n" + "\n".join(lines)


def report_markdown(payload: dict[str, Any], targets: Sequence[float] | None = None) -> str:
    """The whole Markdown report: header with machine and data set, one table per recall target."""
    m, d = payload["machine"], payload["dataset"]
    head = (f"**{d['name']}** ({d['n_train']:,} × {d['dim']}, {d['metric']}, {d['n_test']:,} queries, "
            f"k={payload['k']}) on {m['cpu']} ({m['cores']} cores, {m['threads']} threads), {m['date'][:10]}.")
    parts = [head, ""]
    for target in targets or payload.get("targets", RECALL_TARGETS):
        parts += [markdown_table(payload["results"], target), ""]
    if payload.get("filtered"):
        parts += ["Filtered search (metadata filter; peers with a native row filter):", "",
                  filtered_table(payload["filtered"]), ""]
    if payload.get("skipped"):
        parts += ["Skipped: " + "; ".join(payload["skipped"]), ""]
    return "\n".join(parts)


def plot(records: Sequence[dict[str, Any]], path: str, qps_key: str = "qps_batch", title: str = "") -> None:
    """ann-benchmarks style: recall (x) against log QPS (y), the Pareto frontier of each algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    names = list(dict.fromkeys(r["algorithm"] for r in records))
    markers = "os^vD<>pPX*h"
    for i, name in enumerate(names):
        front = pareto([r for r in records if r["algorithm"] == name], qps_key)
        style = "-" if name.startswith("shoal:") else "--"
        ax.plot([p["recall"] for p in front], [p[qps_key] for p in front], style, marker=markers[i % len(markers)],
                color=plt.cm.tab20(i % 20), label=name, linewidth=2 if name.startswith("shoal:") else 1.2, markersize=5)
    ax.set_yscale("log")
    ax.set_xlabel("recall@k")
    ax.set_ylabel("queries per second" + (" (batch)" if qps_key == "qps_batch" else " (one at a time)"))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_BEGIN = "<!-- bench-results:begin -->"
README_END = "<!-- bench-results:end -->"


def update_readme(readme: str, section: str) -> bool:
    """Replace the text between the results markers of ``readme``; False when the markers are missing."""
    with open(readme) as f:
        text = f.read()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    with open(readme, "w") as f:
        f.write(text[:start + len(README_BEGIN)] + "\n" + section.strip() + "\n" + text[end:])
    return True
