"""List-valued payload fields: disk and memory per row, reopen time and filter CPU time.

A durable collection of ``n`` rows (``dim``-d vectors, small so payloads dominate) with list
fields ``tags`` (0-6 strings of 2,000, Zipf-like), ``scores`` (3 ints of 1,000) and a scalar
``g``, with or without payload indexes on the list fields, is built in one process; a fresh
process reopens it and reports open time, resident growth (anonymous / file pages) per row after
the filters ran, and per filter family the CPU time of ``count`` (every call a new value, so no
cached mask answers) and of a filtered search, the minimum over rounds.

Only ``import shoal`` is used, so the same file measures another checkout of Shoal in the same
run (``PYTHONPATH=/tmp/old python bench/list_payload_bench.py ...``): that is how lists matched
in Python (complex rows) compare with lists through offsets.

Run: ``python -m shoal.bench.list_payload_bench --n 200000 [--indexed] [--data DIR]``.
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

import numpy as np

VOCAB, SCORES, ROUNDS, CALLS = 2000, 1000, 3, 20


def _payloads(start: int, stop: int) -> list[dict]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, stop):
        tags = np.minimum(rng.zipf(1.3, size=int(rng.integers(0, 7))), VOCAB) - 1
        out.append({"tags": [f"t{t}" for t in tags.tolist()],
                    "scores": rng.integers(0, SCORES, size=3).tolist(), "g": i % 10})
    return out


def build(path: str, n: int, dim: int, indexed: bool, batch: int = 10_000) -> dict:
    import shoal

    t0 = time.perf_counter()
    with shoal.Database(path, sync="never") as db:
        opts = {"payload_indexes": {"tags": "keyword", "scores": "range"}} if indexed else {}
        col = db.create_collection("lists", dim=dim, metric="l2", **opts)
        for s in range(0, n, batch):
            e = min(n, s + batch)
            col.upsert(list(range(s, e)), np.random.default_rng(s).standard_normal((e - s, dim)).astype(np.float32),
                       _payloads(s, e))
        col.optimize()
    rows_bytes = sum(p.stat().st_size for p in Path(path).rglob("rows.*"))
    return {"build_s": time.perf_counter() - t0, "rows_file_bytes_per_row": rows_bytes / n}


def _families(rng: np.random.Generator) -> dict[str, list[dict]]:
    """Per family, CALLS * ROUNDS filters with distinct values (no segment's mask cache answers)."""
    m = CALLS * ROUNDS
    rare = [f"t{v}" for v in rng.permutation(np.arange(300, VOCAB))[:m].tolist()]
    common = [f"t{v}" for v in rng.permutation(np.arange(5, 200))[:m].tolist()]
    scores = rng.permutation(SCORES)[:m].tolist()
    return {
        "tags == rare": [{"tags": t} for t in rare],
        "tags == common": [{"tags": t} for t in common],
        "tags $in 3": [{"tags": {"$in": [a, b, c]}} for a, b, c in zip(rare, common, rare[::-1])],
        "scores == v": [{"scores": v} for v in scores],
        "tags == rare and g == 3": [{"tags": t, "g": 3} for t in rare],
    }


def reopen(path: str, dim: int) -> dict:
    import shoal
    from shoal.bench.capacity import rss_split

    warm = shoal.Database().create_collection("warm", dim=dim, metric="l2")  # kernels compiled before measuring
    warm.upsert([1, 2], np.zeros((2, dim), np.float32), [{"tags": ["a"]}, {"tags": "b"}])
    warm.search(np.zeros(dim, np.float32), k=1, filter={"tags": "a"})
    base = rss_split()
    t0 = time.perf_counter()
    db = shoal.Database(path, read_only=True)
    col = db.get_collection("lists")
    open_s = time.perf_counter() - t0
    n = col.count()
    out = {"n": n, "open_s": open_s, "count_ms": {}, "search_ms": {}}
    q = np.random.default_rng(1).standard_normal(dim).astype(np.float32)
    for family, flts in _families(np.random.default_rng(7)).items():
        counts, searches = [], []
        for r in range(ROUNDS):
            batch = flts[r * CALLS:(r + 1) * CALLS]
            half = CALLS // 2
            t = time.process_time()
            for flt in batch[:half]:
                col.count(flt)
            counts.append((time.process_time() - t) / half * 1e3)
            t = time.process_time()
            for flt in batch[half:]:
                col.search(q, k=10, filter=flt)
            searches.append((time.process_time() - t) / (CALLS - half) * 1e3)
        out["count_ms"][family], out["search_ms"][family] = min(counts), min(searches)
    after = rss_split()
    out["rss_anon_per_row"] = (after["RssAnon"] - base["RssAnon"]) / n - 4 * dim  # beyond the raw vectors
    out["rss_file_per_row"] = (after["RssFile"] - base["RssFile"]) / n
    db.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--indexed", action="store_true", help="payload indexes on tags (keyword) and scores (range)")
    parser.add_argument("--data", help="collection directory (built when missing; default a temporary one)")
    parser.add_argument("--phase", choices=("build", "reopen"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "build":
        print(json.dumps(build(args.data, args.n, args.dim, args.indexed)))
        return
    if args.phase == "reopen":
        print(json.dumps(reopen(args.data, args.dim)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or os.path.join(tmp, "db")
        result = {}
        base = [sys.executable, os.path.abspath(__file__), "--n", str(args.n), "--dim", str(args.dim), "--data", data]
        if not os.path.exists(data):
            result["build"] = _child(base + ["--phase", "build"] + (["--indexed"] if args.indexed else []))
        result["reopen"] = _child(base + ["--phase", "reopen"])
        print(json.dumps(result, indent=1))


def _child(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
