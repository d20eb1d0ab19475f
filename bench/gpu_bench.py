"""GPU (CuPy) vs CPU (Numba) backends, and faiss-gpu where it imports: exact and IVF-PQ on 1M vectors.

Workload: synthetic clustered 1M × 128 (no SIFT1M offline), 10k queries, k=10; the FAISS
paper's reference point is SIFT1M IVF4096,PQ64 at nprobe 64: 10k queries in 0.224 s at
R@10 0.983. Everything runs in one process on the same data:

* exact: Shoal Flat on the GPU (all queries) vs on the CPU (a query subset, QPS scaled),
  ids compared; faiss GpuIndexFlatL2 when faiss-gpu imports;
* k-means: IVF-style training (``--kmeans-n`` points, ``--kmeans-k`` centroids, 10 iterations)
  on each backend, time and inertia;
* IVF4096,PQ64 trained and filled on the GPU, saved, loaded on both backends: search QPS
  and recall@10 at nprobe 64, without re-ranking (FAISS's setting) and with it (Shoal's
  default); faiss-gpu IVF4096,PQ64 (float16 lookup tables, as m=64 needs) when it imports.

Run on a GPU machine (about 5 minutes on an H200): ``python -m shoal.bench.gpu_bench --out r.json``;
``--n 200000 --queries 2000`` for a quick pass.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs (after one warm-up) and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    from shoal.bench.metrics import recall_ids

    return recall_ids(found, truth, k)


def _faiss_gpu() -> Any | None:
    try:
        import faiss

        return faiss if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 else None
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--cpu-queries", type=int, default=1000, help="CPU backends search this many (QPS scaled)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--nprobe", type=int, default=64)
    parser.add_argument("--kmeans-n", type=int, default=200_000)
    parser.add_argument("--kmeans-k", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import numba

    from shoal.bench.datasets import clustered
    from shoal.engine.backend import gpu_available
    from shoal.engine.device import memory_report
    from shoal.index.flat import FlatIndex
    from shoal.index.ivf import IVFIndex
    from shoal.quant.kmeans import KMeans

    if not gpu_available():
        raise SystemExit("gpu_bench needs a usable GPU (see the 'shoal.backend' log line)")
    import cupy

    res: dict[str, Any] = {"params": vars(args), "cpu_threads": numba.get_num_threads(),
                           "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                           "faiss_paper_reference": "SIFT1M IVF4096,PQ64 nprobe 64: 10k queries 0.224 s, R@10 0.983"}
    t0 = time.perf_counter()
    data = clustered(n=args.n, dim=args.dim, n_test=args.queries, n_clusters=1000)
    x, q = data.train, data.test
    qc = q[: args.cpu_queries]
    ids = np.arange(x.shape[0])
    res["data_seconds"] = round(time.perf_counter() - t0, 2)
    print(f"data {x.shape} queries {q.shape} in {res['data_seconds']} s", flush=True)

    # ------------------------------------------------------------------ exact
    gpu_flat = FlatIndex(args.dim, "l2", backend="cupy")
    gpu_flat.add(x, ids)
    t_gpu, (_, truth) = _timed(lambda: gpu_flat.search(q, args.k), args.repeat)
    cpu_flat = FlatIndex(args.dim, "l2", backend="numba")
    cpu_flat.add(x, ids)
    t_cpu, (_, cpu_ids) = _timed(lambda: cpu_flat.search(qc, args.k), 1)
    same = float(np.mean([set(a) == set(b) for a, b in zip(cpu_ids.tolist(), truth[: len(qc)].tolist())]))
    res["exact"] = {"gpu_qps": q.shape[0] / t_gpu, "gpu_seconds": t_gpu, "cpu_qps": qc.shape[0] / t_cpu,
                    "gpu_over_cpu": (q.shape[0] / t_gpu) / (qc.shape[0] / t_cpu), "same_ids_fraction": same}
    cpu_flat = None  # free the CPU copy before the IVF part
    faiss = _faiss_gpu()
    if faiss is not None:
        gres = faiss.StandardGpuResources()
        fflat = faiss.GpuIndexFlatL2(gres, args.dim)
        fflat.add(x)
        t_f, (_, f_ids) = _timed(lambda: fflat.search(q, args.k), args.repeat)
        res["exact"].update(faiss_gpu_qps=q.shape[0] / t_f, shoal_over_faiss=t_f / t_gpu,
                            faiss_recall=_recall(f_ids, truth, args.k))
        del fflat
    print("exact", json.dumps(res["exact"]), flush=True)
    gpu_flat = None

    # ----------------------------------------------------------------- k-means
    sample = np.ascontiguousarray(x[: args.kmeans_n])
    km = {}
    for name in ("cupy", "numba"):
        t0 = time.perf_counter()
        fit = KMeans(args.kmeans_k, niter=10, init="random", tol=0.0, backend=name).fit(sample)
        km[name] = (time.perf_counter() - t0, fit.inertia)
    res["kmeans"] = {"gpu_seconds": km["cupy"][0], "cpu_seconds": km["numba"][0],
                     "gpu_speedup": km["numba"][0] / km["cupy"][0],
                     "inertia_ratio_gpu_cpu": km["cupy"][1] / km["numba"][1]}
    print("kmeans", json.dumps(res["kmeans"]), flush=True)

    # ------------------------------------------------------------------ IVF-PQ
    t0 = time.perf_counter()
    ivf = IVFIndex(args.dim, "l2", nlist=args.nlist, codec="pq", m=args.m, backend="cupy")
    ivf.train(x)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ivf.add(x, ids)
    t_add = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ivfpq.shoal")
        ivf.save(path)
        del ivf
        gpu_ivf = IVFIndex.load(path, backend="cupy", mmap=False)
        cpu_ivf = IVFIndex.load(path, backend="numba", mmap=False)
    res["ivfpq"] = {"gpu_train_seconds": t_train, "gpu_add_seconds": t_add}
    for label, params in (("adc", {"nprobe": args.nprobe, "rescore": False}), ("rescored", {"nprobe": args.nprobe})):
        t_g, (_, g_ids) = _timed(lambda: gpu_ivf.search(q, args.k, params=params), args.repeat)
        t_c, (_, c_ids) = _timed(lambda: cpu_ivf.search(qc, args.k, params=params), 1)
        res["ivfpq"][label] = {
            "gpu_seconds": t_g, "gpu_qps": q.shape[0] / t_g, "gpu_recall": _recall(g_ids, truth, args.k),
            "cpu_qps": qc.shape[0] / t_c, "cpu_recall": _recall(c_ids, truth[: len(qc)], args.k),
            "gpu_recall_same_queries": _recall(g_ids[: len(qc)], truth[: len(qc)], args.k),
            "gpu_over_cpu": (q.shape[0] / t_g) / (qc.shape[0] / t_c)}
        print("ivfpq", label, json.dumps(res["ivfpq"][label]), flush=True)
    if faiss is not None:
        fidx = faiss.index_factory(args.dim, f"IVF{args.nlist},PQ{args.m}")
        co = faiss.GpuClonerOptions()
        co.useFloat16 = True  # GPU IVFPQ needs float16 lookup tables beyond 48 bytes per code
        fgpu = faiss.index_cpu_to_gpu(gres, 0, fidx, co)
        t0 = time.perf_counter()
        fgpu.train(x)
        fgpu.add(x)
        t_fb = time.perf_counter() - t0
        faiss.GpuParameterSpace().set_index_parameter(fgpu, "nprobe", args.nprobe)
        t_f, (_, f_ids) = _timed(lambda: fgpu.search(q, args.k), args.repeat)
        res["ivfpq"]["faiss_gpu"] = {"seconds": t_f, "qps": q.shape[0] / t_f, "recall": _recall(f_ids, truth, args.k),
                                     "train_add_seconds": t_fb,
                                     "shoal_adc_over_faiss": t_f / res["ivfpq"]["adc"]["gpu_seconds"]}
        print("ivfpq faiss", json.dumps(res["ivfpq"]["faiss_gpu"]), flush=True)
    else:
        res["ivfpq"]["faiss_gpu"] = "faiss-gpu not importable here (pip install faiss-gpu-cu12 where a registry is reachable)"
    res["device_memory"] = memory_report()
    print(json.dumps(res, indent=1, default=float))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, default=float)
    return res


if __name__ == "__main__":
    main()
