"""Filtered search with and without payload indexes: same data, same process, interleaved passes.

Two in-memory flat collections hold the same ``n`` rows (default 1M x 96, one segment each after
``optimize()``) and payloads ``tag`` (str, 100 values: 1 % each), ``tag2`` (str, 1000 values:
0.1 %), ``price`` (float, uniform in [0, 1)); one declares ``payload_indexes={"tag": "keyword",
"tag2": "keyword", "price": "range"}``. Each query has its own filter value (cycling through more
values than the per-filter mask cache keeps), as when every request filters on its own user or
tag, so neither side answers from the cache. Families: keyword equality at 1 % and 0.1 %, a
price range of 1 % and 0.1 %, and a conjunction (tag 1 % and price < 0.5). Filtered searches at
these selectivities are exact scans of the matching rows whatever the vector index (the
planner's choice), so the difference is how the rows are found.

``--crossover`` times the filter alone (column scan vs payload index, live mask and count
included) from 0.1 % to 50 % of the rows: the data behind ``INDEX_MAX_FRACTION``.

Run: ``python -m shoal.bench.payload_index_bench [--n 1000000] [--crossover]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

INDEXES = {"tag": "keyword", "tag2": "keyword", "price": "range"}


def _payloads(start: int, stop: int, price: np.ndarray) -> list[dict[str, Any]]:
    return [{"tag": f"t{i % 100}", "tag2": f"u{(i * 7) % 1000}", "price": float(price[i - start])}
            for i in range(start, stop)]


def build(n: int, dim: int, batch: int = 50_000) -> tuple[Any, Any]:
    import shoal

    db = shoal.Database()
    opts = dict(dim=dim, metric="l2", optimizer={"background": False})
    plain = db.create_collection("plain", **opts)
    indexed = db.create_collection("indexed", payload_indexes=INDEXES, **opts)
    rng = np.random.default_rng(0)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        x = rng.standard_normal((e - s, dim)).astype(np.float32)
        payloads = _payloads(s, e, rng.random(e - s))
        for col in (plain, indexed):
            col.upsert(list(range(s, e)), x, payloads)
    for col in (plain, indexed):
        col.optimize()
    return plain, indexed


def families(nq: int) -> dict[str, list[dict[str, Any]]]:
    """Per family, one filter per query (distinct values in turn)."""
    lo = np.random.default_rng(1).random(nq) * 0.98
    return {
        "keyword 1%": [{"tag": f"t{i % 100}"} for i in range(nq)],
        "keyword 0.1%": [{"tag2": f"u{i % 1000}"} for i in range(nq)],
        "range 1%": [{"price": {"$gte": float(a), "$lt": float(a) + 0.01}} for a in lo],
        "range 0.1%": [{"price": {"$gte": float(a), "$lt": float(a) + 0.001}} for a in lo],
        "tag 1% and price < 0.5": [{"tag": f"t{(i * 3) % 100}", "price": {"$lt": 0.5}} for i in range(nq)],
    }


def qps(col: Any, queries: np.ndarray, filters: list[dict[str, Any]], k: int) -> float:
    t0 = time.perf_counter()
    for q, flt in zip(queries, filters):
        col.search(q, k, filter=flt)
    return len(filters) / (time.perf_counter() - t0)


def compare(plain: Any, indexed: Any, dim: int, nq: int, k: int, repeats: int) -> dict[str, Any]:
    queries = np.random.default_rng(2).standard_normal((nq, dim)).astype(np.float32)
    out: dict[str, Any] = {}
    for name, filters in families(nq).items():
        for flt in filters[:3]:  # same answers, and the indexed side really used its indexes
            a, b = indexed.search(queries[0], k, filter=flt, explain=True), plain.search(queries[0], k, filter=flt)
            assert a.ids == b.ids and {p["filter_source"] for p in a.plan} == {"payload index"}, flt
        runs: dict[str, list[float]] = {"plain": [], "indexed": []}
        for rep in range(repeats):  # interleaved, order alternating
            order = (("plain", plain), ("indexed", indexed)) if rep % 2 == 0 else (("indexed", indexed), ("plain", plain))
            for label, col in order:
                runs[label].append(qps(col, queries, filters, k))
        ratio = [i / p for i, p in zip(runs["indexed"], runs["plain"])]
        out[name] = {"plain_qps": [round(v, 1) for v in runs["plain"]],
                     "indexed_qps": [round(v, 1) for v in runs["indexed"]],
                     "ratio": [round(min(ratio), 2), round(max(ratio), 2)]}
    return out


def crossover(indexed: Any, repeats: int = 5) -> list[dict[str, Any]]:
    """Time of finding a filter's live rows by column scan vs payload index, by selectivity."""
    from shoal.engine.filters import compile_filter

    seg = next(s for s in indexed._shard.segments if s.sealed)
    n, meta, ix = seg.n, seg.meta, seg.payload_indexes
    rows_out = []
    for fraction in (0.001, 0.01, 0.05, 0.1, 0.2, 0.5):
        for label, flt in (("range", {"price": {"$lt": fraction}}),
                           ("keyword $in", {"tag": {"$in": [f"t{i}" for i in range(max(1, round(fraction * 100)))]}})):
            node = compile_filter(flt)

            def scan() -> int:
                return int(np.count_nonzero(seg.live[:n] & node.mask(meta)))

            def via_index() -> int:
                rows = node.index_rows(meta, ix)
                rows = rows[seg.live[rows]]
                mask = np.zeros(n, bool)
                mask[rows] = True
                return int(rows.size)

            assert scan() == via_index()
            times = {}
            for name, fn in (("scan_ms", scan), ("index_ms", via_index)):
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t0)
                times[name] = round(best * 1e3, 3)
            rows_out.append({"filter": label, "fraction": fraction, **times})
    return rows_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--crossover", action="store_true", help="also time the filter alone by selectivity")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    plain, indexed = build(args.n, args.dim)
    out: dict[str, Any] = {"n": args.n, "dim": args.dim, "k": args.k, "queries": args.queries,
                           "build_s": round(time.perf_counter() - t0, 1), "load_before": os.getloadavg()}
    out["families"] = compare(plain, indexed, args.dim, args.queries, args.k, args.repeats)
    if args.crossover:
        out["crossover"] = crossover(indexed)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
