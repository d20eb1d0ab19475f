"""Record API benchmark (issue 19): scroll and get-by-filter, embedded vs served, against the
workarounds they replace, on the same collection in one run.

    .venv/bin/python -m shoal.bench.records_bench --n 100000 --dim 64

* scroll: every record in pages of ``--page`` (metadata only, then with vectors), embedded and
  through a ``shoal serve`` subprocess (gRPC over loopback);
* the old scan (``integrations._records`` before issue 19): a zero-vector search with
  k = count(filter), which the planner answers exactly; possible only up to k = 16384 rows, so it
  is compared on a 10% filter;
* get by filter (10% and 1% of the rows) with ``get(filter=...)``;
* get by ids when some are missing: ``get(ids, missing="skip")`` (one call) vs the old bisection.

Prints one JSON document; rows/s are medians of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import shoal


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _scroll_all(col: Any, page: int, include: tuple[str, ...], filter: Any = None) -> int:
    n, cursor = 0, None
    while True:
        got = col.scroll(filter, page, cursor, include)
        n += len(got.records)
        cursor = got.next_cursor
        if cursor is None:
            return n


def _old_scan(col: Any, filter: Any) -> int:
    k = col.count(filter) + 64
    return len(col.search(np.zeros(col.dim, np.float32), k=k, filter=filter, include=("metadata",)))


def _old_get_existing(col: Any, ids: list[Any]) -> int:
    """The bisection ``integrations._records.get_existing`` did before ``missing="skip"``."""
    def rec(chunk: list[Any]) -> int:
        if not chunk:
            return 0
        try:
            return len(col.get(chunk))
        except shoal.IdNotFoundError:
            if len(chunk) == 1:
                return 0
            mid = len(chunk) // 2
            return rec(chunk[:mid]) + rec(chunk[mid:])
    return rec(ids)


def measure(col: Any, n: int, page: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for include in (("metadata",), ("metadata", "vector")):
        s, got = _timed(lambda: _scroll_all(col, page, include), repeat)
        assert got == n, (got, n)
        out[f"scroll[{'+'.join(include)}] rows/s"] = n / s
    for name, flt in (("10%", {"g": 3}), ("1%", {"h": 7})):
        s, got = _timed(lambda: len(col.get(filter=flt, include=("metadata",))), repeat)
        out[f"get(filter {name}) rows/s"] = got / s
        out[f"get(filter {name}) ms"] = s * 1e3
    s, got = _timed(lambda: _scroll_all(col, page, ("metadata",), {"g": 3}), repeat)
    out["scroll(filter 10%) rows/s"] = got / s
    s, got = _timed(lambda: _old_scan(col, {"g": 3}), repeat)
    out["old zero-vector scan(filter 10%) rows/s"] = got / s
    ids = list(range(0, n, n // 1000))[:1000]
    ids[::100] = [f"missing-{i}" for i in range(len(ids[::100]))]  # 10 of 1000 missing
    s, got = _timed(lambda: len(col.get(ids, missing="skip", include=("metadata",))), repeat)
    out["get 1000 ids, 10 missing, skip: ms"] = s * 1e3
    s, got2 = _timed(lambda: _old_get_existing(col, ids), repeat)
    assert got == got2
    out["get 1000 ids, 10 missing, old bisection: ms"] = s * 1e3
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--page", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    from ..rpc.cli import spawn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    meta = [{"g": i % 10, "h": i % 100, "title": f"doc {i}", "tags": ["a", "b"]} for i in range(args.n)]
    results: dict[str, Any] = {"n": args.n, "dim": args.dim, "page": args.page}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        with shoal.Database(data) as db:
            col = db.create_collection("c", dim=args.dim, metric="l2", index="hnsw")
            for s in range(0, args.n, 10_000):
                col.upsert(list(range(s, min(args.n, s + 10_000))), x[s:s + 10_000], meta[s:s + 10_000])
            col.optimize()
        with shoal.Database(data, read_only=True) as db:
            results["embedded"] = measure(db.get_collection("c"), args.n, args.page, args.repeat)
        proc, port = spawn(["--port", "0", "--data", str(data)])
        try:
            with shoal.Client(f"127.0.0.1:{port}", timeout=600) as client:
                results["served"] = measure(client.get_collection("c"), args.n, args.page, args.repeat)
        finally:
            proc.terminate()
            proc.wait(60)
    results["served/embedded"] = {k: results["served"][k] / results["embedded"][k] for k in results["embedded"]}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
