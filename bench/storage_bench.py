"""Durable storage benchmark: ingest throughput per sync mode, reopen/recovery time, disk bytes per vector.

    .venv/bin/python -m shoal.bench.storage_bench --n 200000 --ingest-n 20000

Reopen is measured for a fully flushed collection (segments only) and for one whose
last ``--tail`` vectors are still in the write-ahead log (recovery replays them), with
and without checksum verification of the segment files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import shoal


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def ingest(root: Path, sync: str, n: int, dim: int, batch: int, index: str) -> dict[str, Any]:
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    path = root / f"ingest-{sync}"
    db = shoal.Database(path, sync=sync, flush_rows=n + 1)
    col = db.create_collection("c", dim=dim, metric="l2", index=index)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        col.upsert(list(range(s, min(n, s + batch))), x[s:s + batch])
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    db.close()  # flush to a segment
    flush = time.perf_counter() - t1
    out = {"sync": sync, "n": n, "batch": batch, "vectors_per_s": n / elapsed, "batches_per_s": n / batch / elapsed,
           "flush_s": flush}
    shutil.rmtree(path)
    return out


def build(path: Path, n: int, dim: int, tail: int, index: str, chunk: int = 50_000) -> None:
    """n vectors, the last ``tail`` left in the WAL (the writer is 'crashed' without flushing)."""
    rng = np.random.default_rng(1)
    db = shoal.Database(path, sync="never", flush_rows=n + 1)
    col = db.create_collection("c", dim=dim, metric="l2", index=index)
    bounds = sorted({*range(0, n - tail, chunk), *range(n - tail, n, chunk), n})
    for s, e in zip(bounds, bounds[1:]):
        col.upsert(list(range(s, e)), rng.standard_normal((e - s, dim)).astype(np.float32))
        if e == n - tail:
            col.flush()
    col._store.wal.sync_now()
    db._release()  # no flush: the tail stays in the log as after a crash


def reopen(path: Path, verify: bool) -> float:
    t0 = time.perf_counter()
    db = shoal.Database(path, read_only=True, verify=verify)
    elapsed = time.perf_counter() - t0
    assert len(db.get_collection("c")) > 0
    db.close()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="vectors for the reopen measurements")
    ap.add_argument("--ingest-n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--tail", type=int, default=20_000, help="vectors left in the WAL for the recovery case")
    ap.add_argument("--index", default="Flat")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="shoal-storage-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"dim": args.dim, "ingest": [], "reopen": []}
    try:
        for sync in ("always", "batch", "never"):
            r = ingest(root, sync, args.ingest_n, args.dim, args.batch, args.index)
            results["ingest"].append(r)
            print(f"ingest sync={sync:6s} batch={args.batch}: {r['vectors_per_s']:,.0f} vectors/s "
                  f"({r['batches_per_s']:,.0f} acknowledged batches/s), flush {r['flush_s']:.2f}s", flush=True)
        for tail in (0, args.tail):
            path = root / f"reopen-{tail}"
            build(path, args.n, args.dim, tail, args.index)
            disk = _dir_bytes(path)
            for verify in (True, False):
                t = reopen(path, verify)
                results["reopen"].append({"n": args.n, "wal_tail": tail, "verify": verify, "seconds": t})
                print(f"reopen n={args.n:,} wal_tail={tail:,} verify={verify}: {t:.2f}s", flush=True)
            per = disk / args.n
            results.setdefault("disk", []).append({"wal_tail": tail, "bytes": disk, "bytes_per_vector": per,
                                                   "raw_float32": 4 * args.dim})
            print(f"disk: {per:.1f} bytes/vector (raw float32 {4 * args.dim}; ratio {per / (4 * args.dim):.2f})",
                  flush=True)
            shutil.rmtree(path)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
