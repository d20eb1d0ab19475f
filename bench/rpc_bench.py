"""gRPC overhead: search QPS (batch 1 and 100) and upsert throughput, served vs embedded, same run.

The server is a ``shoal serve`` subprocess on loopback (in memory); the embedded side
is a ``shoal.Database`` in this process holding the same data. Results are checked to
be identical, then timed (best of ``--repeat``).
Run: ``python -m shoal.bench.rpc_bench --n 20000 --dim 128``.
"""
from __future__ import annotations

import argparse
import subprocess
import threading
import time
from collections.abc import Callable

import numpy as np

from .metrics import best_seconds, report


SEARCHES = ("search_batch1_qps", "search_batch100_qps", "search_batch100_nometa_qps")  # nometa: ids + distances


def timed(fn: Callable[[], object], repeat: int, threaded: bool) -> float:
    """best_seconds, on a fresh worker thread when ``threaded``."""
    if not threaded:
        return best_seconds(fn, repeat)
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(best_seconds(fn, repeat)))
    worker.start()
    worker.join()
    return out[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="stored vectors")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200, help="queries per timing (batch-1 loop and batches of 100)")
    parser.add_argument("--metric", default="l2")
    parser.add_argument("--index", default="flat")
    parser.add_argument("--upsert-batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import shoal
    from shoal.rpc.cli import spawn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    q = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    ids = np.arange(args.n)
    meta = [{"g": int(i % 10)} for i in range(args.n)]
    proc, port = spawn(["--port", "0"], stderr=subprocess.DEVNULL)  # no access log on the terminal
    results: dict[str, float] = {}
    try:
        with shoal.Client(f"127.0.0.1:{port}", batch_size=args.upsert_batch) as client:
            sides = {"embedded": shoal.Database(), "grpc": client}
            cols = {}
            for side, db in sides.items():
                def load(db=db, side=side) -> None:  # one timed pass: a second would add to the same data
                    col = db.create_collection(f"bench{time.monotonic_ns()}", dim=args.dim, metric=args.metric,
                                               index=args.index)
                    for lo in range(0, args.n, args.upsert_batch):
                        sl = slice(lo, lo + args.upsert_batch)
                        col.upsert(ids[sl], x[sl], meta[sl])
                    cols[side] = col

                results[f"{side}_upsert_rows_per_s"] = args.n / best_seconds(load, 1)
            stream_col = client.create_collection("bench-stream", dim=args.dim, metric=args.metric, index=args.index)
            results["grpc_stream_upsert_rows_per_s"] = args.n / best_seconds(lambda: stream_col.upsert(ids, x, meta), 1)
            client.drop_collection("bench-stream")

            warm = {side: col.search(q[:100], k=args.k) for side, col in cols.items()}  # also compiles
            assert [r.ids for r in warm["embedded"]] == [r.ids for r in warm["grpc"]], "served != embedded"
            # Embedded is timed both on the main thread and on a worker thread (where the server runs
            # its calls): BLAS/Numba thread pools behave differently there; ratios use the faster one.
            runs = [("embedded_main", cols["embedded"], False), ("embedded_thread", cols["embedded"], True),
                    ("grpc", cols["grpc"], False)]
            searches = {
                "search_batch1_qps": lambda col: [col.search(v, k=args.k) for v in q],
                "search_batch100_qps": lambda col: [col.search(q[lo:lo + 100], k=args.k)
                                                    for lo in range(0, len(q), 100)],
                "search_batch100_nometa_qps": lambda col: [col.search(q[lo:lo + 100], k=args.k, include=())
                                                           for lo in range(0, len(q), 100)],
            }
            best: dict[str, float] = {}
            for _ in range(args.repeat):  # rounds interleave the sides so load drift hits them alike
                for side, col, threaded in runs:
                    for what, fn in searches.items():
                        key = f"{side}_{what}"
                        best[key] = min(best.get(key, float("inf")), timed(lambda fn=fn, col=col: fn(col), 1, threaded))
            results.update({key: len(q) / seconds for key, seconds in best.items()})
            for what in SEARCHES:
                results[f"embedded_{what}"] = max(results[f"embedded_main_{what}"],
                                                  results[f"embedded_thread_{what}"])
    finally:
        proc.terminate()
        proc.wait(30)
    for what in (*SEARCHES, "upsert_rows_per_s"):
        results[f"ratio_{what}"] = results[f"grpc_{what}"] / results[f"embedded_{what}"]
    report(f"n={args.n} dim={args.dim} k={args.k} metric={args.metric} index={args.index} "
           f"queries={args.queries} upsert_batch={args.upsert_batch}", results, args, args.json)
    return results


if __name__ == "__main__":
    main()
