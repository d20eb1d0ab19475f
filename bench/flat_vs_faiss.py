"""Flat (exact) batch search throughput: Shoal vs a plain numpy baseline vs faiss-cpu IndexFlat.

Same process, same data, same thread count; reports QPS and ratios.
Run: ``python -m shoal.bench.flat_vs_faiss --n 200000 --queries 2000``.
"""
from __future__ import annotations

import argparse

import numpy as np


def numpy_baseline(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """What a user writes by hand: one GEMM, argpartition, sort the k."""
    sims = q @ x.T
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import faiss
    import numba
    from threadpoolctl import threadpool_limits

    from shoal.bench.datasets import glove50
    from shoal.bench.metrics import best_seconds, recall_at_k
    from shoal.engine.metrics import normalize_rows
    from shoal.index import FlatIndex

    numba.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    data = glove50(n=args.n, n_test=args.queries)
    x, q = normalize_rows(data.train), normalize_rows(data.test)
    with threadpool_limits(args.threads):
        shoal_index = FlatIndex(x.shape[1], "ip")
        shoal_index.add(x, np.arange(x.shape[0]))
        shoal_index.search(q[:10], args.k)  # compile / warm up
        faiss_index = faiss.IndexFlatIP(x.shape[1])
        faiss_index.add(x)
        truth = numpy_baseline(x, q, args.k)
        results = {}
        for name, fn in (("numpy", lambda: numpy_baseline(x, q, args.k)),
                         ("faiss IndexFlatIP", lambda: faiss_index.search(q, args.k)[1]),
                         ("shoal FlatIndex", lambda: shoal_index.search(q, args.k)[1])):
            seconds = best_seconds(fn, args.repeat)
            results[name] = (args.queries / seconds, recall_at_k(fn(), truth, args.k))
    base = results["shoal FlatIndex"][0]
    print(f"GloVe-50 n={x.shape[0]:,} nq={args.queries} k={args.k} threads={args.threads}")
    print(f"{'engine':<20}{'QPS':>12}{'recall':>9}{'shoal / it':>12}")
    for name, (qps, rec) in results.items():
        print(f"{name:<20}{qps:>12,.0f}{rec:>9.4f}{base / qps:>12.2f}")


if __name__ == "__main__":
    main()
