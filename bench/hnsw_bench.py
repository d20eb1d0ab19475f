"""Shoal HNSW against hnswlib and faiss HNSW: recall–QPS curves, build time, thread scaling.

Same process, same data, same M / ef_construction, same thread count for every library.
Modes, each at every ef_search:

* ``batch``: all queries in one call (library threads = ``--threads``);
* ``single``: one query per call, one Python thread;
* ``threads``: ``--threads`` Python threads, each making one-query calls on the same index
  (what a server does); ``scale`` is its QPS over ``single``'s.

Recall@10 is against exact search (Shoal's FlatIndex). The summary gives each library's QPS at
the recall targets (interpolated on its curve) and Shoal's ratios to hnswlib.

Run: ``python -m shoal.bench.hnsw_bench --data glove-50 --n 400000`` or ``--data minilm-docstrings``.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .hnsw_vs_hnswlib import qps_at

Search = Callable[[np.ndarray, int], np.ndarray]
#: Wall-clock QPS per mode, plus QPS per CPU second (``batch_cpu``: the process's CPU, every thread;
#: ``single_cpu``: the calling thread's): on a shared, loaded machine wall time measures the
#: scheduler, CPU time still compares the libraries' work.
MODES = ("batch", "single", "threads", "batch_cpu", "single_cpu")


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k].tolist()) & set(b.tolist())) / k for a, b in zip(found, truth)]))


class Peer:
    """One library's index behind three calls: build, batch search, one-query search."""

    name: str

    def build(self, x: np.ndarray, metric: str, m: int, ef_construction: int, threads: int) -> None: ...

    def set_ef(self, ef: int) -> None: ...

    def batch(self, q: np.ndarray, k: int) -> np.ndarray: ...

    def one(self, q: np.ndarray, k: int) -> np.ndarray: ...


class ShoalPeer(Peer):
    def __init__(self, codes: str) -> None:
        self.codes = codes
        self.name = f"shoal-{codes}"

    def build(self, x, metric, m, ef_construction, threads):
        from shoal.index import HNSWIndex

        self.index = HNSWIndex(x.shape[1], metric, M=m, ef_construction=ef_construction, codes=self.codes)
        self.index.add(x, np.arange(x.shape[0]))

    def set_ef(self, ef):
        self.params = {"ef_search": ef}

    def batch(self, q, k):
        return self.index.search(q, k, params=self.params)[1]

    def one(self, q, k):
        return self.index.search(q, k, params=self.params)[1]


class HnswlibPeer(Peer):
    name = "hnswlib"

    def build(self, x, metric, m, ef_construction, threads):
        import hnswlib

        self.index = hnswlib.Index(space={"l2": "l2", "cosine": "cosine", "ip": "ip"}[metric], dim=x.shape[1])
        self.index.init_index(max_elements=x.shape[0], M=m, ef_construction=ef_construction, random_seed=0)
        self.index.set_num_threads(threads)
        self.index.add_items(x, np.arange(x.shape[0]))

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def batch(self, q, k):
        return self.index.knn_query(q, k=k)[0]

    def one(self, q, k):
        return self.index.knn_query(q, k=k, num_threads=1)[0]


class FaissPeer(Peer):
    name = "faiss"

    def build(self, x, metric, m, ef_construction, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        self.normalize = metric == "cosine"
        kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self.index = faiss.IndexHNSWFlat(x.shape[1], m, kind)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(self._prep(x))

    def _prep(self, q):
        if not self.normalize:
            return np.ascontiguousarray(q, np.float32)
        return np.ascontiguousarray(q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30), np.float32)

    def set_ef(self, ef):
        self.index.hnsw.efSearch = ef

    def batch(self, q, k):
        return self.index.search(self._prep(q), k)[1]

    def one(self, q, k):
        return self.index.search(self._prep(q), k)[1]


#: Every timed mode repeats its query set until it has run this long: 500 one-query calls take
#: 10-20 ms, where thread start-up and the GIL's 5 ms switch interval would decide the 2-thread number.
MIN_SECONDS = 0.3


def _batch(peer: Peer, q: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """Results, wall QPS and QPS per second of the process's CPU time (batch calls repeated)."""
    t0, c0 = time.perf_counter(), time.process_time()
    found, done = peer.batch(q, k), q.shape[0]
    while time.perf_counter() - t0 < MIN_SECONDS:
        peer.batch(q, k)
        done += q.shape[0]
    return found, done / (time.perf_counter() - t0), done / (time.process_time() - c0)


def _single(peer: Peer, q: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """Results, wall QPS and QPS per second of this thread's CPU time (passes repeated)."""
    out = np.empty((q.shape[0], k), np.int64)
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(q.shape[0]):
        out[i] = peer.one(q[i:i + 1], k)[0]
    done = q.shape[0]
    while time.perf_counter() - t0 < MIN_SECONDS:
        for i in range(q.shape[0]):
            peer.one(q[i:i + 1], k)
        done += q.shape[0]
    return out, done / (time.perf_counter() - t0), done / (time.thread_time() - c0)


def _threaded(peer: Peer, q: np.ndarray, k: int, threads: int, single_qps: float) -> float:
    """QPS of ``threads`` Python threads each making one-query calls over its share of ``q``, as many
    passes as make the run last about ``MIN_SECONDS`` at ``threads`` times the one-thread rate."""
    start = threading.Barrier(threads + 1)
    passes = max(1, int(np.ceil(MIN_SECONDS * single_qps * threads / q.shape[0])))

    def work(part: np.ndarray) -> None:
        start.wait()
        for _ in range(passes):
            for i in range(part.shape[0]):
                peer.one(part[i:i + 1], k)

    workers = [threading.Thread(target=work, args=(part,)) for part in np.array_split(q, threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return passes * q.shape[0] / (time.perf_counter() - t0)


def run(data: Any, peers: list[Peer], efs: list[int], m: int, ef_construction: int, threads: int,
        k: int = 10, single_n: int = 1000, passes: int = 1) -> dict[str, Any]:
    """Build every peer, then sweep ef_search ``passes`` times with the peers interleaved at each ef
    (a load change on a shared machine hits every peer alike); curves keep each pass's best QPS
    and record the range."""
    import numba

    from .datasets import ground_truth

    numba.set_num_threads(threads)
    truth = ground_truth(data, k)
    x, q = data.train, data.test
    qs = q[:single_n]
    out: dict[str, Any] = {"data": data.name, "n": int(x.shape[0]), "dim": int(x.shape[1]), "nq": int(q.shape[0]),
                           "M": m, "ef_construction": ef_construction, "threads": threads, "passes": passes,
                           "peers": {}}
    _warm_shoal(x, q, data.metric)
    for peer in peers:
        t0, c0 = time.perf_counter(), time.process_time()
        peer.build(x, data.metric, m, ef_construction, threads)
        out["peers"][peer.name] = {"build_s": time.perf_counter() - t0, "build_cpu_s": time.process_time() - c0,
                                   "curve": []}
        print(f"{peer.name:>12} build {out['peers'][peer.name]['build_s']:.1f} s "
              f"(CPU {out['peers'][peer.name]['build_cpu_s']:.1f} s)", flush=True)
    for ef in efs:
        seen: dict[str, list[dict[str, Any]]] = {peer.name: [] for peer in peers}
        for _ in range(passes):
            for peer in peers:
                peer.set_ef(max(ef, k))
                found, batch, batch_cpu = _batch(peer, q, k)
                found_1, single, single_cpu = _single(peer, qs, k)
                par = _threaded(peer, qs, k, threads, single)
                seen[peer.name].append({"recall": recall_at(found, truth), "batch": batch, "single": single,
                                        "recall_single": recall_at(found_1, truth[:single_n]), "threads": par,
                                        "batch_cpu": batch_cpu, "single_cpu": single_cpu})
        for peer in peers:
            runs = seen[peer.name]
            r = {"ef": ef, "recall": runs[0]["recall"], "recall_single": runs[0]["recall_single"]}
            for mode in MODES:
                r[mode] = max(run[mode] for run in runs)
                r[mode + "_range"] = [min(run[mode] for run in runs), r[mode]]
            r["scale"] = r["threads"] / r["single"]
            out["peers"][peer.name]["curve"].append(r)
            print(f"{peer.name:>12} ef={ef:>4} R@10={r['recall']:.4f} batch={r['batch']:>9,.0f} single={r['single']:>8,.0f} "
                  f"{threads}thr={r['threads']:>8,.0f} scale={r['scale']:.2f}", flush=True)
    out["summary"] = summarize(out)
    return out


def _warm_shoal(x: np.ndarray, q: np.ndarray, metric: str) -> None:
    """Compile Shoal's kernels outside the timed regions (both code settings, batch and one query)."""
    from shoal.index import HNSWIndex

    for codes in ("sq8", "none"):
        warm = HNSWIndex(x.shape[1], metric, M=8, ef_construction=16, codes=codes)
        warm.add(x[:500], np.arange(500))
        warm.search(q[:5], 10)
        warm.search(q[0], 10)


def summarize(out: dict[str, Any], targets: tuple[float, ...] = (0.90, 0.95, 0.99)) -> dict[str, Any]:
    """QPS at each recall target per peer and mode, and every Shoal peer's ratio to hnswlib."""
    summary: dict[str, Any] = {}
    for name, res in out["peers"].items():
        entry: dict[str, Any] = {"build_s": res["build_s"], "build_cpu_s": res["build_cpu_s"]}
        for mode in MODES:
            key = "recall" if mode.startswith("batch") else "recall_single"
            curve = [(r[key], r[mode]) for r in res["curve"]]
            entry[mode] = {f"{t:.2f}": qps_at(curve, t) for t in targets}
        summary[name] = entry
    base = summary.get("hnswlib")
    if base:
        for name, entry in summary.items():
            if name == "hnswlib":
                continue
            entry["vs_hnswlib"] = {mode: {t: (v / base[mode][t] if v and base[mode][t] else None)
                                          for t, v in entry[mode].items()} for mode in MODES}
            entry["vs_hnswlib"]["build"] = entry["build_s"] / base["build_s"]
            entry["vs_hnswlib"]["build_cpu"] = entry["build_cpu_s"] / base["build_cpu_s"]
    return summary


def print_summary(out: dict[str, Any], target: str = "0.95") -> None:
    print(f"\n{out['data']} n={out['n']:,} d={out['dim']} nq={out['nq']} M={out['M']} "
          f"efC={out['ef_construction']} threads={out['threads']}; QPS at recall@10 {target}")
    print(f"{'peer':>12} {'build s':>8} {'batch':>9} {'single':>8} {'threads':>8} {'scale':>6} {'batch/cpu':>9} "
          f"{'single/cpu':>10}  vs hnswlib (batch/single/batch-cpu/single-cpu/build)")
    fmt = lambda v: f"{v:,.0f}" if v else "n/a"  # noqa: E731
    for name, e in out["summary"].items():
        b, s, t = e["batch"][target], e["single"][target], e["threads"][target]
        scale = f"{t / s:.2f}" if t and s else "n/a"
        vs = e.get("vs_hnswlib")
        ratio = "" if not vs else " / ".join(f"{v:.2f}" if v else "n/a" for v in (
            vs["batch"][target], vs["single"][target], vs["batch_cpu"][target], vs["single_cpu"][target], vs["build"]))
        print(f"{name:>12} {e['build_s']:>8.1f} {fmt(b):>9} {fmt(s):>8} {fmt(t):>8} {scale:>6} "
              f"{fmt(e['batch_cpu'][target]):>9} {fmt(e['single_cpu'][target]):>10}  {ratio}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="glove-50", help="glove-50, minilm-docstrings, clustered, ...")
    parser.add_argument("--n", type=int, default=None, help="training rows (data set default if omitted)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--efs", default="10,16,24,32,48,64,96,128,192,256")
    parser.add_argument("--peers", default="shoal-sq8,shoal-none,hnswlib,faiss",
                        help="shoal-auto is the default (codes='auto': shoal-sq8 from AUTO_SQ8_MIN_DIM, else shoal-none)")
    parser.add_argument("--passes", type=int, default=2, help="sweeps per ef, peers interleaved (range in the JSON)")
    parser.add_argument("--json", default=None, help="write the full results here")
    args = parser.parse_args(argv)

    from .datasets import load

    kwargs: dict[str, Any] = {"n_test": args.queries}
    if args.n is not None:
        kwargs["n"] = args.n
    data = load(args.data, **kwargs)
    makers = {"shoal-auto": lambda: ShoalPeer("auto"), "shoal-sq8": lambda: ShoalPeer("sq8"),
              "shoal-none": lambda: ShoalPeer("none"),
              "hnswlib": HnswlibPeer, "faiss": FaissPeer}
    peers = [makers[name]() for name in args.peers.split(",")]
    out = run(data, peers, [int(e) for e in args.efs.split(",")], args.M, args.ef_construction, args.threads,
              single_n=min(1000, args.queries), passes=args.passes)
    print_summary(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
