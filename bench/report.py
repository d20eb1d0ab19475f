"""Benchmark outputs: JSON results, Markdown tables with ratios to the best peer, recall–QPS plots."""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .plans import describe, index_comparable

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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # a shared machine's load skews everything
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "load_avg_1m": load,
            "python": platform.python_version(),
            "platform": platform.platform(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}


def machine_text(m: dict[str, Any]) -> str:
    """``AMD EPYC (2 cores, 2 threads, load 26)``: the CPU, and the load average when the run ended."""
    load = m.get("load_avg_1m")
    return (f"{m['cpu']} ({m['cores']} cores, {m['threads']} threads"
            + (f", load average {load:.0f} at the end" if load is not None else "") + ")")


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
    """One row per algorithm at ``target`` recall; ``× best peer`` = batch QPS / fastest peer reaching it.

    Settings of an approximate algorithm that an exact scan served (see ``plans.index_comparable``)
    are left out: they would put the scan's speed under the index's name."""
    comparable = [r for r in records if index_comparable(r)]
    rows = best_at(comparable, target)
    peers = [r["qps_batch"] for name, r in rows.items() if not name.startswith("shoal:") and not r["below"]]
    best_peer = max(peers) if peers else None
    lines = [f"Fastest setting with recall@k ≥ {target} (else the best recall reached, in *italics*).", "",
             "| algorithm | params | plan | recall | QPS batch | QPS 1-by-1 | p50 ms | p99 ms | build s | bytes/vec "
             "| × best peer |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in sorted(rows.items(), key=lambda kv: (kv[1]["below"], -kv[1]["qps_batch"])):
        recall = f"*{r['recall']:.3f}*" if r["below"] else f"{r['recall']:.3f}"
        ratio = "–" if r["below"] or not best_peer else f"{r['qps_batch'] / best_peer:.2f}"
        lines.append(f"| {name} | {_params(r['params'])} | {describe(r['plan'])} | {recall} "
                     f"| {_fmt(r['qps_batch'], ',.0f')} "
                     f"| {_fmt(r['qps_single'], ',.0f')} | {_fmt(r['p50_ms'], '.3f')} | {_fmt(r['p99_ms'], '.3f')} "
                     f"| {_fmt(r['build_s'], '.2f')} | {_fmt(r['bytes_per_vector'], '.0f')} | {ratio} |")
    left_out = excluded_settings(records)
    if left_out:
        lines += ["", "Left out (an exact scan served them, not the index): " + "; ".join(left_out) + "."]
    return "\n".join(lines)


def excluded_settings(records: Sequence[dict[str, Any]]) -> list[str]:
    """``algorithm params`` of every row left out of index comparisons."""
    return [f"{r['algorithm']} {_params(r['params'])}" for r in records if not index_comparable(r)]


def filtered_table(records: Sequence[dict[str, Any]]) -> str:
    """Recall, batch QPS and the path that served it, per method (columns) and selectivity (rows)."""
    names = list(dict.fromkeys(r["algorithm"] for r in records))
    sels = sorted({r["selectivity"] for r in records})
    cell = {(r["algorithm"], r["selectivity"]): r for r in records}
    rows = {r["selectivity"]: r["matching"] for r in records}
    lines = ["| selectivity | rows | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    for s in sels:
        parts = [f"{rows[s]:,}"]
        for name in names:
            r = cell.get((name, s))
            if r is None:
                parts.append("–")
                continue
            text = f"{r['recall']:.3f} @ {r['qps_batch']:,.0f}"
            parts.append(text + (f" ({describe(r['plan'])})" if name.startswith("shoal:") or
                                 not index_comparable(r) else ""))
        lines.append(f"| {s * 100:g}% | " + " | ".join(parts) + " |")
    return ("recall@k @ QPS (batch), and for Shoal the path the planner chose (`exact`: the matching rows "
            "were scanned, so that cell measures the scan, not the index)\n\n" + "\n".join(lines))


def report_markdown(payload: dict[str, Any], targets: Sequence[float] | None = None) -> str:
    """The whole Markdown report: header with machine and data set, one table per recall target."""
    m, d = payload["machine"], payload["dataset"]
    head = (f"**{d['name']}** ({d['n_train']:,} × {d['dim']}, {d['metric']}, {d['n_test']:,} queries, "
            f"k={payload['k']}) on {machine_text(m)}, {m['date'][:10]}.")
    parts = [head, ""]
    for target in targets or payload.get("targets", RECALL_TARGETS):
        parts += [markdown_table(payload["results"], target), ""]
    if payload.get("filtered"):
        parts += ["Filtered search (metadata filter; peers with a native row filter):", "",
                  filtered_table(payload["filtered"]), ""]
    if payload.get("skipped"):
        parts += ["Skipped: " + "; ".join(payload["skipped"]), ""]
    return "\n".join(parts)


#: One colour per library, so a reader follows a library across all its algorithms.
LIBRARY_COLOURS = {"shoal": "#d62728", "faiss": "#1f77b4", "hnswlib": "#2ca02c", "usearch": "#ff7f0e",
                   "voyager": "#9467bd", "scipy": "#8c564b", "sklearn": "#e377c2", "numpy": "#7f7f7f",
                   "chroma": "#17becf", "lancedb": "#bcbd22"}
#: Marker per algorithm family (matched in order against the upper-cased spec).
FAMILY_MARKERS = (("HNSW", "o"), ("IVF", "^"), ("PQ", "D"), ("SQ", "X"), ("KDTREE", "*"), ("CKDTREE", "*"),
                  ("FLAT", "s"), ("BRUTE", "s"))
#: Recall 1.0 sits at +inf on a logit axis; it is drawn here (and the axis labelled so).
RECALL_CLIP = (0.5, 0.9995)


def family_marker(algorithm: str) -> str:
    spec = algorithm.partition(":")[2].upper()
    if "IVF" in spec and ("PQ" in spec or "SQ" in spec):
        return "v" if "SQ" in spec else "D"
    return next((m for key, m in FAMILY_MARKERS if spec.startswith(key)), "p")


def plot(records: Sequence[dict[str, Any]], path: str, qps_key: str = "qps_batch", title: str = "") -> None:
    """ann-benchmarks style, zoomed: recall (x, logit scale so 0.9–0.999 spreads out) against log QPS (y),
    the Pareto frontier of each algorithm; one colour per library, one marker per algorithm family,
    Shoal's lines solid and drawn on top. Rows an exact scan served under an index's name are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparable = [r for r in records if index_comparable(r)]
    fig, ax = plt.subplots(figsize=(9, 6))
    names = list(dict.fromkeys(r["algorithm"] for r in comparable))
    for name in sorted(names, key=lambda n: not n.startswith("shoal:")):
        front = pareto([r for r in comparable if r["algorithm"] == name], qps_key)
        library = name.partition(":")[0]
        ours = library == "shoal"
        ax.plot([min(max(p["recall"], RECALL_CLIP[0]), RECALL_CLIP[1]) for p in front], [p[qps_key] for p in front],
                "-" if ours else "--", marker=family_marker(name), color=LIBRARY_COLOURS.get(library, "black"),
                label=name, linewidth=2.2 if ours else 1.0, markersize=7 if ours else 5,
                markerfacecolor=None if ours else "white", zorder=3 if ours else 2, alpha=1.0 if ours else 0.85)
    ax.set_xscale("logit")
    ax.set_xlim(*RECALL_CLIP)
    ax.set_xticks([0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999])
    ax.set_xticklabels(["0.5", "0.8", "0.9", "0.95", "0.99", "0.995", "0.999"])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("recall@k (logit scale; recall 1.0 drawn at 0.9995)")
    ax.set_ylabel("queries per second" + (" (batch)" if qps_key == "qps_batch" else " (one at a time)"))
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: Where ``--readme`` keeps each suite's report, JSON and plots (committed; the README links them).
DOCS_DIR = os.path.join("docs", "bench")
#: Recall targets of the README's index table (the full report has all of ``RECALL_TARGETS``).
README_TARGETS = (0.95,)


def _load_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def readme_section(docs_dir: str = DOCS_DIR) -> str:
    """The README's results section, from the suites' JSON under ``docs_dir`` (each suite that has run)."""
    from .db_suite import db_table, ratio_table
    from .served_suite import served_markdown

    parts = []
    index = _load_json(os.path.join(docs_dir, "index.json"))
    if index is not None:
        flag = "--quick " if index.get("preset") == "quick" else ""
        parts += ["#### Indices against index libraries", "",
                  f"`shoal bench {flag}--readme`; every target in [docs/bench/index.md](docs/bench/index.md).", "",
                  f"![recall vs QPS](docs/bench/{index['dataset']['name']}-batch.png)", "",
                  report_markdown(index, README_TARGETS), ""]
    db = _load_json(os.path.join(docs_dir, "db.json"))
    if db is not None:
        flag = "--quick " if db.get("preset") == "quick" else ""
        m, d = db["machine"], db["dataset"]
        parts += ["#### Databases, embedded and durable", "",
                  f"`shoal bench --suite db {flag}--readme`: {d['name']}, {d['n_train']:,} rows, metadata "
                  f"`{{g, cat, year}}`, k={db['k']}, {db['n_single']} queries one per call ({db['n_filtered']} "
                  f"filtered), each engine in its own process, on {machine_text(m)}, "
                  f"{m['date'][:10]}. Every setting in [docs/bench/db.md](docs/bench/db.md).", "",
                  "![database suite](docs/bench/db.png)", "", db_table(db["rows"]), "", ratio_table(db["rows"])]
        if db.get("skipped"):
            parts += ["", "Skipped: " + "; ".join(db["skipped"])]
        parts.append("")
    served = _load_json(os.path.join(docs_dir, "served.json"))
    if served is not None:
        flag = "--quick " if served.get("preset") == "quick" else ""
        parts += ["#### Served", "", f"`shoal bench --suite served {flag}--readme`:", "", served_markdown(served)]
    parts += ["", "Measured on a shared machine: numbers are noisy (see the date and CPU above each table)."]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(parts))


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
