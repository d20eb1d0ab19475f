"""Shoal HNSW vs hnswlib on GloVe-50: recall–QPS over ef_search, build time, memory.

Same process, same data, same M / ef_construction, same thread count.
Run: ``python -m shoal.bench.hnsw_vs_hnswlib --n 200000 --queries 1000``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(found, truth)]))


def qps_at(curve: list[tuple[float, float]], target: float) -> float | None:
    """QPS at a recall target, interpolated on the (recall, QPS) curve; None if never reached."""
    pts = sorted(curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            w = 0.0 if r1 == r0 else (target - r0) / (r1 - r0)
            return q0 + w * (q1 - q0)
    return pts[0][1] if pts and pts[0][0] >= target else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--efs", default="10,16,24,32,48,64,96,128,200")
    args = parser.parse_args(argv)

    import hnswlib
    import numba

    from shoal.bench.datasets import glove50
    from shoal.index import FlatIndex, HNSWIndex

    numba.set_num_threads(args.threads)
    data = glove50(n=args.n, n_test=args.queries)
    x, q = data.train, data.test
    ids = np.arange(x.shape[0])
    flat = FlatIndex(x.shape[1], "cosine")
    flat.add(x, ids)
    truth = flat.search(q, 10)[1]

    warm = HNSWIndex(x.shape[1], "cosine", M=args.M)
    warm.add(x[:2000], ids[:2000])
    warm.search(q[:5], 10)  # compile batch and single-query kernels outside the timed region
    warm.search(q[0], 10)
    t0 = time.perf_counter()
    shoal_index = HNSWIndex(x.shape[1], "cosine", M=args.M, ef_construction=args.ef_construction)
    shoal_index.add(x, ids)
    shoal_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    peer = hnswlib.Index(space="cosine", dim=x.shape[1])
    peer.init_index(max_elements=x.shape[0], M=args.M, ef_construction=args.ef_construction, random_seed=0)
    peer.set_num_threads(args.threads)
    peer.add_items(x, ids)
    peer_build = time.perf_counter() - t0

    curves: dict[str, dict[str, list[tuple[float, float]]]] = {"shoal": {"batch": [], "single": []},
                                                               "hnswlib": {"batch": [], "single": []}}
    single_n = min(300, q.shape[0])
    print(f"GloVe-50 n={x.shape[0]:,} nq={q.shape[0]} k=10 M={args.M} efC={args.ef_construction} threads={args.threads}")
    print(f"{'ef':>5} | {'shoal R@10':>10} {'batch QPS':>10} {'1-q QPS':>9} | {'hnswlib R@10':>12} {'batch QPS':>10} {'1-q QPS':>9}")
    for ef in [int(e) for e in args.efs.split(",")]:
        t0 = time.perf_counter()
        found = shoal_index.search(q, 10, params={"ef_search": ef})[1]
        s_batch = q.shape[0] / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(single_n):
            shoal_index.search(q[i], 10, params={"ef_search": ef})
        s_single = single_n / (time.perf_counter() - t0)
        s_rec = _recall(found, truth)
        peer.set_ef(max(ef, 10))
        t0 = time.perf_counter()
        pfound = peer.knn_query(q, k=10)[0]
        p_batch = q.shape[0] / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(single_n):
            peer.knn_query(q[i:i + 1], k=10)
        p_single = single_n / (time.perf_counter() - t0)
        p_rec = _recall(pfound, truth)
        curves["shoal"]["batch"].append((s_rec, s_batch))
        curves["shoal"]["single"].append((s_rec, s_single))
        curves["hnswlib"]["batch"].append((p_rec, p_batch))
        curves["hnswlib"]["single"].append((p_rec, p_single))
        print(f"{ef:>5} | {s_rec:>10.4f} {s_batch:>10,.0f} {s_single:>9,.0f} | {p_rec:>12.4f} {p_batch:>10,.0f} {p_single:>9,.0f}")
    for target in (0.90, 0.95):
        for mode in ("batch", "single"):
            s = qps_at(curves["shoal"][mode], target)
            p = qps_at(curves["hnswlib"][mode], target)
            ratio = f"{s / p:.2f}x" if s and p else "n/a"
            print(f"QPS ratio shoal/hnswlib at recall {target:.2f} ({mode}): {ratio}")
    print(f"build: shoal {shoal_build:.1f}s, hnswlib {peer_build:.1f}s, ratio {shoal_build / peer_build:.2f}")
    print(f"memory/vector: shoal {shoal_index.nbytes / x.shape[0]:.0f} B (vectors + graph + ids)")


if __name__ == "__main__":
    main()
