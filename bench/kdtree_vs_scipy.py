"""k-d tree build time and k-NN query throughput: Shoal vs scipy cKDTree vs scikit-learn KDTree vs flat.

Same process, same data (uniform in the unit cube, seeded), same thread count
for every engine that can use threads (scikit-learn's KDTree query has none).
Also checks that Shoal returns exactly the neighbours cKDTree returns and
reports where brute force (Shoal FlatIndex) overtakes the tree in dimension.
Run: ``python -m shoal.bench.kdtree_vs_scipy --dims 2 3 8 16 --sizes 100000 1000000``.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_case(n: int, dim: int, nq: int, peer_nq: int, k: int, threads: int, leaf_size: int,
             repeat: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Build seconds and QPS per engine for one (n, dim); slow peers query ``peer_nq`` queries."""
    from scipy.spatial import cKDTree
    from sklearn.neighbors import KDTree

    from shoal.index import FlatIndex, KDTreeIndex

    rng = np.random.default_rng(seed)
    x = rng.random((n, dim), dtype=np.float32)
    q = rng.random((nq, dim), dtype=np.float32)
    ids = np.arange(n)
    out: dict[str, dict[str, float]] = {}

    tree = KDTreeIndex(dim, "l2", leaf_size=leaf_size)
    add_s, _ = _timed(lambda: tree.add(x, ids))  # validation + id table, before the tree exists
    build_s, _ = _timed(tree.build)
    qs, (_, shoal_ids) = _timed(lambda: tree.search(q, k), repeat)
    out["shoal KDTree"] = {"build_s": build_s, "qps": nq / qs, "add_s": add_s}

    build_s, ckd = _timed(lambda: cKDTree(x, leafsize=leaf_size))
    qs, (_, ckd_ids) = _timed(lambda: ckd.query(q, k, workers=threads), repeat)
    out["scipy cKDTree"] = {"build_s": build_s, "qps": nq / qs}
    agree = float(np.mean([np.intersect1d(a, b).size / k for a, b in zip(shoal_ids, ckd_ids)]))
    out["scipy cKDTree"]["same_ids"] = agree

    build_s, skl = _timed(lambda: KDTree(x, leaf_size=leaf_size))
    qs, _ = _timed(lambda: skl.query(q[:peer_nq], k))
    out["sklearn KDTree (1 thread)"] = {"build_s": build_s, "qps": peer_nq / qs}

    flat = FlatIndex(dim, "l2")
    build_s, _ = _timed(lambda: flat.add(x, ids))
    qs, _ = _timed(lambda: flat.search(q[:peer_nq], k))
    out["shoal Flat"] = {"build_s": build_s, "qps": peer_nq / qs}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 8, 16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--peer-queries", type=int, default=1000,
                        help="queries for the slow single-threaded / brute-force peers")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--leaf-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import numba
    from threadpoolctl import threadpool_limits

    from shoal.index import KDTreeIndex

    numba.set_num_threads(args.threads)
    warm = KDTreeIndex(2)  # compile outside the timed region
    warm.add(np.zeros((2, 2), np.float32), [0, 1])
    warm.build()
    warm.search(np.zeros((1, 2), np.float32), 1)
    print(f"k={args.k} queries={args.queries} (peers marked *: {args.peer_queries}) threads={args.threads} "
          f"leaf_size={args.leaf_size}, uniform data")
    print(f"{'n':>9} {'d':>3} {'engine':<28}{'build s':>9}{'QPS':>12}{'shoal/it':>10}")
    with threadpool_limits(args.threads):
        for n in args.sizes:
            for dim in args.dims:
                res = run_case(n, dim, args.queries, min(args.peer_queries, args.queries), args.k,
                               args.threads, args.leaf_size, args.repeat)
                base = res["shoal KDTree"]["qps"]
                for name, r in res.items():
                    extra = f"  same ids {r['same_ids']:.4f}" if "same_ids" in r else ""
                    extra += f"  (+ add {r['add_s']:.3f} s)" if "add_s" in r else ""
                    star = "*" if name.startswith(("sklearn", "shoal Flat")) else " "
                    print(f"{n:>9,} {dim:>3} {name + star:<28}{r['build_s']:>9.3f}{r['qps']:>12,.0f}"
                          f"{base / r['qps']:>10.2f}{extra}", flush=True)


if __name__ == "__main__":
    main()
