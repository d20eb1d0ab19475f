"""Benchmark metrics: recall against ground truth, latency percentiles."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def recall_at_k(found: Sequence[Sequence[Any]], truth: Sequence[Sequence[Any]], k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / min(k, |truth|); queries with no truth are skipped."""
    hits = 0
    total = 0
    for f, t in zip(found, truth):
        t = [x for x in list(t)[:k] if not (isinstance(x, (int, np.integer)) and x < 0)]
        if not t:
            continue
        hits += len(set(list(f)[:k]) & set(t))
        total += len(t)
    return hits / total if total else 1.0


def recall_ids(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Vectorised :func:`recall_at_k` for ``(nq, ≥k)`` id arrays (negative ids are padding)."""
    found = np.asarray(found)[:, :k]
    truth = np.asarray(truth)[:, :k]
    valid = truth >= 0
    total = int(valid.sum())
    if total == 0:
        return 1.0
    hit = (found[:, :, None] == truth[:, None, :]) & valid[:, None, :] & (found[:, :, None] >= 0)
    return float(hit.any(axis=1).sum()) / total


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of per-query latencies, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def rss_bytes() -> int:
    """Current resident set size of this process (peak RSS where /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls (the least disturbed by a noisy machine)."""
    import time

    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(header: str, results: dict[str, float], args: Any, json_path: str | None) -> None:
    """Print ``results`` under ``header`` (ratios and milliseconds with 3 decimals) and save them as JSON."""
    import json

    print(header)
    for key, value in results.items():
        print(f"  {key:42s} {value:12.3f}" if key.startswith("ratio") or key.endswith("_ms") else
              f"  {key:42s} {value:12.1f}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)


def emit_json(report: dict[str, Any], path: str | None) -> None:
    """Print a benchmark's nested report as JSON, and save it to ``path`` when given."""
    import json

    print(json.dumps(report, indent=2))
    if path:
        with open(path, "w") as fh:
            json.dump(report, fh, indent=2)
