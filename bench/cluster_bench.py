"""Scatter-gather overhead of shoal.cluster against a single collection, and replicated ingest.

Same run, same data (GloVe-50, cosine, exact ``flat`` index so every configuration returns the
same answers and only the distribution differs), same machine:

* search: a single embedded ``shoal.Collection`` (the peer) and RayCollections of 1, 2 and 4
  shards (1 replica) and of 1 shard x ``--read-replicas`` replicas; one query per call and
  batches of ``--batch`` queries (QPS, p50/p99 of a call), and one-query calls from
  ``--threads`` client threads at once (QPS: what a replica sustains when kept busy). Answers are
  checked equal to the peer's before anything is timed.
* ingest: rows/s of ``--ingest`` rows in batches of ``--ingest-batch`` into a durable embedded
  database (sync="always", the peer) and into 2-shard RayCollections with 1 and 2 replicas.

Every configuration is measured ``--rounds`` times; the report gives the range. All replicas run
on this machine, so a shard's work and the router share its cores (on a cluster each shard has
its own node: see docs/scale.md for what carries over).

Run: ``python -m shoal.bench.cluster_bench --n 100000 --out bench-results/cluster.json``
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .datasets import glove50
from .metrics import latency_percentiles


def _timed_calls(fn: Callable[[int], object], calls: int) -> list[float]:
    out = []
    for i in range(calls):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def _concurrent_qps(col: Any, queries: np.ndarray, k: int, threads: int, calls: int) -> float:
    """One-query calls from ``threads`` client threads at once: the throughput a replica sustains
    when it is kept busy (the single-call numbers above are latency-bound)."""
    def client(t: int) -> None:
        for i in range(calls):
            col.search(queries[(t * calls + i) % len(queries)], k=k)

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(client, range(threads)))
        return threads * calls / (time.perf_counter() - start)


def measure_search(col: Any, queries: np.ndarray, k: int, batch: int, singles: int, batches: int,
                   threads: int) -> dict[str, float]:
    col.search(queries[:batch], k=k)  # warm: compiled kernels, connections
    one = _timed_calls(lambda i: col.search(queries[i % len(queries)], k=k), singles)
    many = _timed_calls(lambda i: col.search(queries[(i * batch) % (len(queries) - batch):][:batch], k=k), batches)
    p1, pb = latency_percentiles(one), latency_percentiles(many)
    return {"single_qps": singles / sum(one), "single_p50_ms": p1["p50_ms"], "single_p99_ms": p1["p99_ms"],
            "batch_qps": batches * batch / sum(many), "batch_p50_ms": pb["p50_ms"], "batch_p99_ms": pb["p99_ms"],
            "concurrent_qps": _concurrent_qps(col, queries, k, threads, max(1, singles // threads))}


def measure_ingest(col: Any, x: np.ndarray, batch: int, offset: int) -> float:
    t = time.perf_counter()
    for start in range(0, len(x), batch):
        col.upsert(list(range(offset + start, offset + start + len(x[start:start + batch]))), x[start:start + batch])
    return len(x) / (time.perf_counter() - t)


def _load(col: Any, x: np.ndarray, chunk: int = 20000) -> None:
    for start in range(0, len(x), chunk):
        col.upsert(list(range(start, start + len(x[start:start + chunk]))), x[start:start + chunk])


def _check_same(col: Any, peer: Any, queries: np.ndarray, k: int) -> None:
    a, b = peer.search(queries[:50], k=k), col.search(queries[:50], k=k)
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra.distances, rb.distances, rtol=0, atol=1e-6)
        if np.any(np.diff(ra.distances) == 0):
            continue  # ties: ids may come in another order
        assert ra.ids == rb.ids, "sharded answer differs from the single collection"


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from threadpoolctl import threadpool_limits

    import shoal
    from shoal.cluster import RayDatabase

    data = glove50(n=args.n, n_test=1000)
    x, queries = data.train, data.test
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=args.object_store_mb << 20,
             namespace="shoal", log_to_driver=False)
    rounds: dict[str, list[dict[str, float]]] = {}
    ingest: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RayDatabase(os.path.join(tmp, "cluster"), sync="always")
        peer = shoal.Database().create_collection("peer", x.shape[1], data.metric, "flat")
        _load(peer, x)
        peer.optimize()  # the same segment layout as each shard's (they are optimized below)
        configs: dict[str, Any] = {"single collection": peer}
        for shards in args.shards:
            col = cluster.create_collection(f"s{shards}", x.shape[1], data.metric, "flat", shards=shards)
            _load(col, x)
            col.optimize()
            _check_same(col, peer, queries, args.k)
            configs[f"{shards} shard{'s' if shards > 1 else ''}"] = col
        if args.read_replicas > 1:  # reads go round robin over a shard's replicas
            col = cluster.create_collection("r", x.shape[1], data.metric, "flat", shards=1, replicas=args.read_replicas)
            _load(col, x)
            col.optimize()
            _check_same(col, peer, queries, args.k)
            configs[f"1 shard x {args.read_replicas} replicas"] = col
        durable = shoal.Database(os.path.join(tmp, "peer-durable"), sync="always")
        ingest_cols: dict[str, Any] = {"single collection (durable)": durable.create_collection("i", x.shape[1], data.metric)}
        for replicas in args.replicas:
            ingest_cols[f"2 shards x {replicas} replica{'s' if replicas > 1 else ''}"] = cluster.create_collection(
                f"i{replicas}", x.shape[1], data.metric, "flat", shards=2, replicas=replicas)
        rows = x[:args.ingest]
        for col in ingest_cols.values():  # warm: a replica's first write loads its kernels (~1.5 s per process)
            measure_ingest(col, rows[:args.ingest_batch], args.ingest_batch, args.rounds * len(rows))
        # Ray's workers run with OMP_NUM_THREADS=1: the same BLAS threads here, set once every library is
        # loaded (measured: two spinning OpenBLAS threads made the in-process batch search 3x slower here)
        blas = threadpool_limits(1, user_api="blas")
        for r in range(args.rounds):
            for name, col in configs.items():
                rounds.setdefault(name, []).append(
                    measure_search(col, queries, args.k, args.batch, args.singles, args.batches, args.threads))
            for name, col in ingest_cols.items():
                ingest.setdefault(name, []).append(measure_ingest(col, rows, args.ingest_batch, r * len(rows)))
        blas.restore_original_limits()
        durable.close()
        cluster.close()
    ray.shutdown()
    import numba

    return {"numba_threads": numba.get_num_threads(), "blas_threads": 1, "dataset": data.name, "n": int(x.shape[0]), "dim": int(x.shape[1]), "k": args.k, "batch": args.batch, "threads": args.threads,
            "ingest_rows": int(len(rows)), "ingest_batch": args.ingest_batch, "cpus": os.cpu_count(),
            "search": rounds, "ingest_rows_per_s": ingest}


def _range(values: list[float], fmt: str = "{:.0f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"


def report(result: dict[str, Any]) -> str:
    peer = result["search"]["single collection"]
    lines = [f"{result['dataset']} n={result['n']} dim={result['dim']} k={result['k']}, flat (exact), "
             f"{len(peer)} rounds, {result['cpus']} cores (shared)", "",
             "| configuration | 1-query QPS | p50 ms | p99 ms | ratio | batch-{b} QPS | p50 ms | p99 ms | ratio "
             "| {t} clients QPS | ratio |".format(b=result["batch"], t=result["threads"]),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    best_single = np.median([r["single_qps"] for r in peer])
    best_batch = np.median([r["batch_qps"] for r in peer])
    best_concurrent = np.median([r["concurrent_qps"] for r in peer])
    for name, runs in result["search"].items():
        col = lambda key, fmt="{:.0f}": _range([r[key] for r in runs], fmt)  # noqa: E731
        lines.append(f"| {name} | {col('single_qps')} | {col('single_p50_ms', '{:.2f}')} | "
                     f"{col('single_p99_ms', '{:.2f}')} | {_range([r['single_qps'] / best_single for r in runs], '{:.2f}')} | "
                     f"{col('batch_qps')} | {col('batch_p50_ms', '{:.1f}')} | {col('batch_p99_ms', '{:.1f}')} | "
                     f"{_range([r['batch_qps'] / best_batch for r in runs], '{:.2f}')} | {col('concurrent_qps')} | "
                     f"{_range([r['concurrent_qps'] / best_concurrent for r in runs], '{:.2f}')} |")
    lines += ["", f"ingest: {result['ingest_rows']} rows in batches of {result['ingest_batch']}, sync=always", "",
              "| configuration | rows/s |", "|---|---|"]
    for name, values in result["ingest_rows_per_s"].items():
        lines.append(f"| {name} | {_range(values)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--singles", type=int, default=300, help="one-query calls timed per round")
    p.add_argument("--batches", type=int, default=20, help="batched calls timed per round")
    p.add_argument("--threads", type=int, default=4, help="client threads of the concurrent one-query measure")
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replicas of the ingest configurations")
    p.add_argument("--read-replicas", type=int, default=2, help="replicas of the 1-shard search configuration")
    p.add_argument("--ingest", type=int, default=20_000)
    p.add_argument("--ingest-batch", type=int, default=500)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--object-store-mb", type=int, default=300)
    p.add_argument("--out", help="write the raw results as JSON here")
    args = p.parse_args(argv)
    result = run(args)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(report(result))


if __name__ == "__main__":
    main()
