"""Capacity benchmark: memory per row beyond the raw vectors, reopen time, disk bytes per row.

A durable collection of ``n`` rows x ``dim`` float32 with three payload fields (``g`` int,
``tag`` str, ``year`` int) is filled in batches in one process; a *fresh* process then opens
it, runs filtered searches (which touch the vectors, the filters' columns and the ids),
and reports its resident memory growth (after loading the kernels on a small collection
first) minus the raw vectors (and, with an index, minus the
index's own arrays, reported apart). Each phase runs in its own process so its RSS is its own.

Run: ``python -m shoal.bench.capacity --n 1000000 --dim 96 [--index HNSW16] [--vectors-on-disk]``.
Resident growth is also given split into anonymous memory and mapped file pages (``RssAnon`` /
``RssFile``): with ``--vectors-on-disk`` the index's vectors are file pages the kernel may drop.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FIELDS_DOC = "g: int (100 values), tag: str (50 values), year: int (30 values)"


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _payloads(start: int, stop: int) -> list[dict]:
    return [{"g": i % 100, "tag": f"t{i % 50}", "year": 1990 + i % 30} for i in range(start, stop)]


def _vectors(start: int, stop: int, dim: int) -> np.ndarray:
    return np.random.default_rng(start).standard_normal((stop - start, dim)).astype(np.float32)


def rss_split() -> dict[str, int]:
    """Resident bytes that are anonymous (must stay in RAM) and file-backed (mapped file pages)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                out[name] = int(value.split()[0]) * 1024
    return out


def ingest(path: str, n: int, dim: int, index: str, batch: int, vectors_on_disk: bool = False) -> dict:
    import shoal

    t0 = time.perf_counter()
    db = shoal.Database(path)
    options = {"vectors_on_disk": True} if vectors_on_disk else {}
    if vectors_on_disk and index.lower().startswith("hnsw"):
        options["codes"] = "sq8"
    col = db.create_collection("cap", dim=dim, metric="l2", index=index, **options)
    for s in range(0, n, batch):
        col.upsert(list(range(s, min(n, s + batch))), _vectors(s, min(n, s + batch), dim), _payloads(s, min(n, s + batch)))
        if (s + batch) % 1_000_000 < batch:  # progress of a long run (a killed run still says how far it got)
            rss = {k: round(v / 2**30, 2) for k, v in rss_split().items()}
            print(f"{min(n, s + batch)} rows, {time.perf_counter() - t0:.0f} s, {rss} GiB", file=sys.stderr, flush=True)
    col.optimize(wait=True)
    seconds = time.perf_counter() - t0
    segments = col.describe()["segments"]
    db.close()
    disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {"ingest_s": round(seconds, 1), "rows_per_s": round(n / seconds), "segments": segments,
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "disk_bytes_per_row": round(disk / n, 1)}


def reopen(path: str, n: int, dim: int) -> dict:
    import shoal

    q = _vectors(10**9, 10**9 + 20, dim)
    _warm_up(dim)
    before, split_before = _rss(), rss_split()
    t0 = time.perf_counter()
    db = shoal.Database(path)
    col = db.get_collection("cap")
    open_s = time.perf_counter() - t0
    res = col.search(q[0], 10, filter={"g": 7}, explain=True)
    t1 = time.perf_counter()
    for v in q:
        col.search(v, 10, filter={"tag": "t3", "year": {"$gte": 2000}})
    filtered_qps = len(q) / (time.perf_counter() - t1)
    grown = _rss() - before
    split = {k: v - split_before[k] for k, v in rss_split().items()}
    index_bytes = sum(a.nbytes for seg in col._shard.segments if seg.index is not None  # in RAM, not mapped
                      for a in vars(seg.index).values() if isinstance(a, np.ndarray) and a.flags.writeable)
    raw = n * dim * 4
    return {"open_s": round(open_s, 2), "rss_growth_gib": round(grown / 2**30, 3),
            "index_gib": round(index_bytes / 2**30, 3),
            "bytes_per_row_beyond_vectors": round((grown - raw) / n, 1),
            "bytes_per_row_beyond_vectors_and_index": round((grown - raw - index_bytes) / n, 1),
            "rss_anon_growth_gib": round(split["RssAnon"] / 2**30, 3),
            "rss_file_growth_gib": round(split["RssFile"] / 2**30, 3),
            "filtered_qps": round(filtered_qps, 1), "plan": [p["path"] for p in res.plan]}


def _warm_up(dim: int) -> None:
    """Load the search kernels (Numba's compiled code and LLVM take ~100 MB once per process)
    on a small in-memory collection, so the measured growth is the collection's own."""
    import shoal

    db = shoal.Database()
    col = db.create_collection("warm", dim=dim, metric="l2")
    col.upsert(list(range(2000)), _vectors(0, 2000, dim), _payloads(0, 2000))
    for flt in (None, {"g": 7}, {"tag": "t3", "year": {"$gte": 2000}}):
        col.search(_vectors(5, 6, dim)[0], 10, filter=flt)
    db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--index", default="flat")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--data", help="directory to keep the collection in (default: a temporary one)")
    parser.add_argument("--vectors-on-disk", action="store_true",
                        help="keep the index's full-precision vectors memory-mapped (HNSW then walks on SQ8 codes)")
    parser.add_argument("--phase", choices=("ingest", "reopen"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        fn = ingest if args.phase == "ingest" else reopen
        extra = (args.index, args.batch, args.vectors_on_disk) if args.phase == "ingest" else ()
        print(json.dumps(fn(args.data, args.n, args.dim, *extra)))
        return
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        path = os.path.join(tmp, "db")
        out = {"n": args.n, "dim": args.dim, "index": args.index, "vectors_on_disk": args.vectors_on_disk,
               "fields": FIELDS_DOC}
        for phase in ("ingest", "reopen"):
            cmd = [sys.executable, "-m", "shoal.bench.capacity", "--phase", phase, "--data", path,
                   "--n", str(args.n), "--dim", str(args.dim), "--index", args.index, "--batch", str(args.batch),
                   *(["--vectors-on-disk"] if args.vectors_on_disk else [])]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            out[phase] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
