"""Full-precision vectors on disk vs in RAM: recall, QPS, open time and resident memory.

One durable collection (clustered Gaussian data, ``n`` x ``dim``; HNSW walks on SQ8 codes) is
ingested and optimized once. The two layouts read the same files (``engine.disk_vectors``), so
the benchmark flips the manifest's ``vectors_on_disk`` flag between runs and opens the collection
in a *fresh process* per run, alternating RAM, disk, RAM, disk. Each search process loads the
kernels on a small collection first, then reports its RSS growth split into anonymous memory
(what the process needs in RAM) and file-backed pages (mapped file pages it touched, which the
kernel may drop and read again), recall@k against exact search and single-query QPS.

The files are in the page cache after ingest, so the disk layout's page faults here are minor;
a cold cache or a collection larger than RAM adds a disk read per faulted page.

Run: ``python -m shoal.bench.disk_vectors_bench [--n 200000] [--dim 96] [--index HNSW16]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .capacity import rss_split


def _data(n: int, dim: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    from shoal.bench.datasets import clustered

    ds = clustered(n=n, dim=dim, n_test=nq, n_clusters=max(10, n // 2000), seed=0)
    return ds.train, ds.test


def ingest(path: str, n: int, dim: int, index: str, nq: int, k: int) -> dict[str, Any]:
    import shoal

    x, q = _data(n, dim, nq)
    t0 = time.perf_counter()
    with shoal.Database(path) as db:
        options = {"codes": "sq8"} if index.lower().startswith("hnsw") else {}
        col = db.create_collection("v", dim=dim, metric="l2", index=index, vectors_on_disk=True, **options)
        for s in range(0, n, 20_000):
            col.upsert(list(range(s, min(n, s + 20_000))), x[s:s + 20_000])
        col.optimize()
    seconds = time.perf_counter() - t0
    d = (q ** 2).sum(1)[:, None] - 2 * q @ x.T + (x ** 2).sum(1)[None, :]
    truth = np.argsort(d, axis=1)[:, :k]
    np.save(Path(path) / "truth.npy", truth)
    return {"ingest_s": round(seconds, 1)}


def set_layout(path: str, on_disk: bool) -> None:
    from shoal.storage.manifest import read_manifest, write_manifest

    directory = Path(path) / "collections" / "v"
    doc = read_manifest(directory)
    doc["vectors_on_disk"] = on_disk
    write_manifest(directory, doc)


def search(path: str, n: int, dim: int, nq: int, k: int, ef: int) -> dict[str, Any]:
    import shoal

    _, q = _data(n, dim, nq)
    truth = np.load(Path(path) / "truth.npy")
    warm = shoal.Database().create_collection("warm", dim=dim, metric="l2", index="HNSW16", codes="sq8")
    warm.upsert(list(range(3000)), np.random.default_rng(0).standard_normal((3000, dim)).astype(np.float32))
    warm.optimize()
    warm.search(q[:2], k)
    warm.search(q[0], k)
    before = rss_split()
    t0 = time.perf_counter()
    db = shoal.Database(path, read_only=True)
    col = db.get_collection("v")
    open_s = time.perf_counter() - t0
    col.search(q[0], k, params={"ef_search": ef})
    t1 = time.perf_counter()
    ids = [col.search(v, k, params={"ef_search": ef}, include=()).ids for v in q]
    single_qps = nq / (time.perf_counter() - t1)
    after = rss_split()
    recall = float(np.mean([len(set(a) & set(t.tolist())) / k for a, t in zip(ids, truth)]))
    seg = next(s for s in col._shard.segments if s.indexed)
    mapped = not seg.index._state()[0]["vectors"].flags.writeable  # the layout really in use
    db.close()
    return {"vectors_on_disk": mapped, "open_s": round(open_s, 2), "recall": round(recall, 4),
            "qps": round(single_qps, 1),
            "rss_anon_growth_mib": round((after["RssAnon"] - before["RssAnon"]) / 2**20, 1),
            "rss_file_growth_mib": round((after["RssFile"] - before["RssFile"]) / 2**20, 1)}


def _phase(args: argparse.Namespace, phase: str, path: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "shoal.bench.disk_vectors_bench", "--phase", phase, "--data", path,
           "--n", str(args.n), "--dim", str(args.dim), "--index", args.index, "--queries", str(args.queries),
           "--k", str(args.k), "--ef", str(args.ef)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--index", default="HNSW16")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", help="directory to keep the collection in (default: a temporary one)")
    parser.add_argument("--phase", choices=("ingest", "search"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "ingest":
        print(json.dumps(ingest(args.data, args.n, args.dim, args.index, args.queries, args.k)))
        return
    if args.phase == "search":
        print(json.dumps(search(args.data, args.n, args.dim, args.queries, args.k, args.ef)))
        return
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        path = os.path.join(tmp, "db")
        out: dict[str, Any] = {"n": args.n, "dim": args.dim, "index": args.index, "k": args.k,
                               "ef_search": args.ef, "raw_vectors_mib": round(args.n * args.dim * 4 / 2**20, 1),
                               "ingest": _phase(args, "ingest", path), "load_before": os.getloadavg(), "runs": []}
        for _ in range(args.repeats):
            for on_disk in (False, True):
                set_layout(path, on_disk)
                out["runs"].append(_phase(args, "search", path))
        out["load_after"] = os.getloadavg()
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
