"""``shoal bench --suite db``: Shoal's durable collection against Chroma and LanceDB, embedded.

Same rows, same metadata (``g`` uniform in 0..99, ``cat``, ``year``), same queries, same k. The
parent prepares the data and the exact ground truth (unfiltered and per filter) once; each engine
then runs in its own process (``bench/db_worker.py``) and reports ingest rows/s, time until indexed,
reopen time (open + first answer), disk bytes per row, peak RSS, one-query-per-call QPS / recall /
p50 / p99 at each of its search settings, and at the setting it needs for the recall target: batch
QPS and one-query-per-call QPS / recall at 1 % and 10 % filters (``g < 1``, ``g < 10``). Shoal's
rows carry the planner's path; LanceDB's come from its own query plan; Chroma does not report one.
Engines whose package is missing are skipped with a line saying so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .datasets import Dataset, ground_truth
from .db_engines import CATEGORIES, ENGINES, split_available
from .plans import describe

#: Filters of the suite: label, ``g < value`` (g is uniform in 0..99).
FILTERS = (("1pct", 1), ("10pct", 10))


@dataclass
class DbConfig:
    k: int = 10
    threads: int = 2
    #: Rows per ingest call (Chroma accepts at most ~5,461 per call).
    batch: int = 5000
    #: Queries timed one per call at each setting, and in the filtered searches.
    n_single: int = 500
    n_filtered: int = 200
    #: Recall the chosen setting must reach.
    target: float = 0.95
    #: Seconds one engine may take before it is stopped and reported as timed out.
    timeout_s: float = 3600.0


def prepare(data: Dataset, cfg: DbConfig, data_dir: str, seed: int = 0) -> None:
    """Arrays, metadata and ground truth every worker reads (the same files for every engine)."""
    n = data.train.shape[0]
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 100, n)
    arrays = {"train": data.train, "test": data.test, "g": g, "cat": rng.integers(0, len(CATEGORIES), n),
              "year": rng.integers(1990, 2025, n), "truth": ground_truth(data, cfg.k)}
    for label, below in FILTERS:
        arrays[f"truth_{label}"] = ground_truth(data, cfg.k, allowed=g < below)
    for name, value in arrays.items():
        np.save(os.path.join(data_dir, f"{name}.npy"), value)
    with open(os.path.join(data_dir, "config.json"), "w") as f:
        json.dump({**asdict(cfg), "metric": data.metric, "filters": FILTERS}, f)


def run_engine(engine: str, data_dir: str, cfg: DbConfig) -> dict[str, Any]:
    """One engine's row, measured in a fresh process with the suite's thread limits."""
    out = os.path.join(data_dir, f"{engine}.json")
    env = {**os.environ, **{v: str(cfg.threads) for v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                           "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                           "RAYON_NUM_THREADS", "LANCE_CPU_THREADS")},
           "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run([sys.executable, "-m", "shoal.bench.db_worker", engine, data_dir, out], env=env,
                          capture_output=True, text=True, timeout=cfg.timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} worker failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    with open(out) as f:
        return json.load(f)


def run_db_suite(data: Dataset, engines: Sequence[str], cfg: DbConfig,
                 work_dir: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of every available engine, and a line per skipped one."""
    ready, skipped = split_available(engines, {name: cls.MODULE for name, cls in ENGINES.items()})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="shoal-db-bench-") as data_dir:
        prepare(data, cfg, data_dir)
        for engine in ready:
            print(f"db suite: {engine} ...", flush=True)
            rows.append(run_engine(engine, data_dir, cfg))
    return rows, skipped


# ------------------------------------------------------------------------------------------ report
def _qr(point: dict[str, Any]) -> str:
    return f"{point['qps']:,.0f} / {point['recall']:.3f}"


def _plan(point: dict[str, Any]) -> str:
    return "" if point["plan"]["path"] == "unreported" else f" ({describe(point['plan'])})"


def _setting(point: dict[str, Any]) -> str:
    text = " ".join(f"{k}={v}" for k, v in point["setting"].items()) or "defaults"
    return f"*{text}, below target*" if point.get("below") else text


def db_table(rows: Sequence[dict[str, Any]]) -> str:
    """The database table: one row per engine."""
    lines = ["| engine | setup | ingest rows/s | indexed after s | reopen s | disk B/row | peak RSS MB "
             "| setting | QPS / recall, 1 per call | p50 / p99 ms | batch QPS | 1 % filter QPS / recall "
             "| 10 % filter QPS / recall |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---|---:|---|---|"]
    for r in rows:
        c, f = r["chosen"], r["filtered"]
        lines.append(f"| {r['engine']} | {r['setup']} | {r['ingest_rows_per_s']:,.0f} | {r['indexed_s']:.1f} "
                     f"| {r['reopen_s']:.2f} | {r['disk_bytes_per_row']:.0f} | {r['peak_rss_mb']:,.0f} "
                     f"| {_setting(c)} | {_qr(c)}{_plan(c)} | {c['p50_ms']:.2f} / {c['p99_ms']:.2f} "
                     f"| {r['batch_qps']:,.0f} | {_qr(f['1pct'])}{_plan(f['1pct'])} "
                     f"| {_qr(f['10pct'])}{_plan(f['10pct'])} |")
    return "\n".join(lines)


#: Ratio columns: (label, getter, higher is better).
RATIOS = (("ingest rows/s", lambda r: r["ingest_rows_per_s"], True),
          ("time until indexed", lambda r: r["indexed_s"], False),
          ("reopen", lambda r: r["reopen_s"], False),
          ("disk B/row", lambda r: r["disk_bytes_per_row"], False),
          ("peak RSS", lambda r: r["peak_rss_mb"], False),
          ("QPS 1 per call", lambda r: r["chosen"]["qps"], True),
          ("batch QPS", lambda r: r["batch_qps"], True),
          ("QPS 1 % filter", lambda r: r["filtered"]["1pct"]["qps"], True),
          ("QPS 10 % filter", lambda r: r["filtered"]["10pct"]["qps"], True))


def ratio_table(rows: Sequence[dict[str, Any]], ours: str = "shoal") -> str:
    """Shoal's value ÷ each peer's (for times, bytes and RSS: the peer's ÷ Shoal's), so > 1 means Shoal is better."""
    mine = next((r for r in rows if r["engine"] == ours), None)
    peers = [r for r in rows if r["engine"] != ours]
    if mine is None or not peers:
        return ""
    lines = ["| Shoal vs | " + " | ".join(label for label, _, _ in RATIOS) + " |",
             "|---|" + "---:|" * len(RATIOS)]
    for p in peers:
        cells = []
        for _, get, higher in RATIOS:
            a, b = get(mine), get(p)
            cells.append("–" if not a or not b else f"{(a / b if higher else b / a):.2f}×")
        lines.append(f"| {p['engine']} | " + " | ".join(cells) + " |")
    return ("Shoal's advantage (× > 1: Shoal better; for times, bytes and RSS the inverse ratio):\n\n"
            + "\n".join(lines))


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| engine | setting | QPS, 1 per call | recall | p50 ms | p99 ms | plan |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        for p in r["points"]:
            lines.append(f"| {r['engine']} | {_setting(p)} | {p['qps']:,.0f} | {p['recall']:.3f} | {p['p50_ms']:.2f} "
                         f"| {p['p99_ms']:.2f} | {describe(p['plan'])} |")
    return "\n".join(lines)


def db_markdown(payload: dict[str, Any]) -> str:
    from .report import machine_text

    m, d = payload["machine"], payload["dataset"]
    parts = [f"**{d['name']}** ({d['n_train']:,} × {d['dim']}, {d['metric']}, k={payload['k']}, "
             f"{payload['n_single']} queries one per call, {payload['n_filtered']} filtered) on "
             f"{machine_text(m)}, {m['date'][:10]}. Each engine in its own process, "
             f"durable, on local disk; setting = fastest reaching recall ≥ {payload['target']}.", "",
             db_table(payload["rows"]), "", ratio_table(payload["rows"]), "", "All settings:", "",
             sweep_table(payload["rows"])]
    if payload.get("skipped"):
        parts += ["", "Skipped: " + "; ".join(payload["skipped"])]
    return "\n".join(parts)


def plot_db(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
    """Bar charts, one panel per measure, one bar (coloured by library) per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import LIBRARY_COLOURS

    panels = (("ingest rows/s ↑", lambda r: r["ingest_rows_per_s"], None),
              ("time until indexed, s ↓", lambda r: r["indexed_s"], None),
              ("reopen, s ↓", lambda r: r["reopen_s"], None),
              ("disk bytes / row ↓", lambda r: r["disk_bytes_per_row"], None),
              ("peak RSS, MB ↓", lambda r: r["peak_rss_mb"], None),
              ("QPS, 1 query per call ↑", lambda r: r["chosen"]["qps"], lambda r: r["chosen"]["recall"]),
              ("batch QPS ↑", lambda r: r["batch_qps"], lambda r: r["batch_recall"]),
              ("QPS, 1 % filter ↑", lambda r: r["filtered"]["1pct"]["qps"], lambda r: r["filtered"]["1pct"]["recall"]),
              ("QPS, 10 % filter ↑", lambda r: r["filtered"]["10pct"]["qps"],
               lambda r: r["filtered"]["10pct"]["recall"]))
    fig, axes = plt.subplots(3, 3, figsize=(11, 8.5))
    names = [r["engine"] for r in rows]
    for ax, (label, get, recall) in zip(axes.ravel(), panels):
        values = [get(r) for r in rows]
        bars = ax.bar(names, values, color=[LIBRARY_COLOURS.get(n, "gray") for n in names])
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelsize=9)
        for bar, r, v in zip(bars, rows, values):
            text = f"{v:,.0f}" if v >= 10 else f"{v:.2f}"
            if recall is not None:
                text += f"\nR={recall(r):.3f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7)
        ax.margins(y=0.25)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
