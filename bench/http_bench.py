"""HTTP/JSON vs gRPC on the same server: one search per request, latency percentiles and QPS.

One ``shoal serve --http-port`` subprocess (in memory) holds the data; the same queries go
to it over gRPC (``shoal.Client``) and over HTTP (a keep-alive ``http.client`` connection
per thread, JSON bodies, the query as a JSON array and as base64 float32), one query per
request, first one client at a time (latency: p50/p99) and then ``--threads`` clients at
once (throughput). Results are checked to be identical before timing; rounds interleave
the sides so load drift hits them alike; each figure is the best round.
Run: ``python -m shoal.bench.http_bench --n 20000 --dim 128``.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .metrics import report


def _http_search(port: int, collection: str, k: int, encoding: str) -> Callable[[np.ndarray], list]:
    """A search function over one keep-alive connection of the calling thread."""
    local = threading.local()
    path = f"/v1/collections/{collection}/search"

    def post(body: str) -> http.client.HTTPResponse:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local.conn.request("POST", path, body, {"content-type": "application/json"})
        return local.conn.getresponse()

    def search(query: np.ndarray) -> list:
        vector: Any = base64.b64encode(query.astype("<f4").tobytes()).decode() if encoding == "base64" \
            else query.tolist()
        body = json.dumps({"vector": vector, "k": k, "include_metadata": True})
        try:
            response = post(body)
        except (ConnectionError, http.client.HTTPException):  # the server closed an idle keep-alive connection
            local.conn.close()
            del local.conn
            response = post(body)
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)["results"][0]["ids"]

    return search


def _latencies(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> np.ndarray:
    out = np.empty(len(queries))
    for i, query in enumerate(queries):
        start = time.perf_counter()
        search(query)
        out[i] = time.perf_counter() - start
    return out


def _concurrent_qps(search: Callable[[np.ndarray], Any], queries: np.ndarray, threads: int) -> float:
    parts = np.array_split(queries, threads)
    workers = [threading.Thread(target=lambda p=p: [search(v) for v in p]) for p in parts]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(queries) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="stored vectors")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000, help="queries per round")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients for the throughput figure")
    parser.add_argument("--metric", default="l2")
    parser.add_argument("--index", default="flat")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the best is reported)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import shoal
    from shoal.rpc.cli import spawn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    q = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    proc, port = spawn(["--port", "0", "--http-port", "0"], stderr=subprocess.DEVNULL)
    http_port = int(proc.stdout.readline().rsplit(":", 1)[1])
    results: dict[str, float] = {}
    try:
        with shoal.Client(f"127.0.0.1:{port}") as client:
            col = client.create_collection("bench", dim=args.dim, metric=args.metric, index=args.index)
            col.upsert(np.arange(args.n), x, [{"g": int(i % 10)} for i in range(args.n)])
            sides: dict[str, Callable[[np.ndarray], Any]] = {
                "grpc": lambda v: col.search(v, k=args.k).ids,
                "http_json": _http_search(http_port, "bench", args.k, "json"),
                "http_base64": _http_search(http_port, "bench", args.k, "base64"),
            }
            want = [col.search(v, k=args.k).ids for v in q[:20]]  # also compiles the kernels
            for side, search in sides.items():
                assert [search(v) for v in q[:20]] == want, f"{side} != grpc"
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                for side, search in sides.items():
                    lat = _latencies(search, q)
                    for key, value in ((f"{side}_p50_ms", np.percentile(lat, 50) * 1e3),
                                       (f"{side}_p99_ms", np.percentile(lat, 99) * 1e3)):
                        best[key] = min(best.get(key, float("inf")), value)
                    best[f"{side}_qps_1client"] = max(best.get(f"{side}_qps_1client", 0.0), len(q) / lat.sum())
                    key = f"{side}_qps_{args.threads}clients"
                    best[key] = max(best.get(key, 0.0), _concurrent_qps(search, q, args.threads))
            results.update(best)
    finally:
        proc.terminate()
        proc.wait(30)
    for side in ("http_json", "http_base64"):
        for what in ("qps_1client", f"qps_{args.threads}clients"):
            results[f"ratio_{side}_vs_grpc_{what}"] = results[f"{side}_{what}"] / results[f"grpc_{what}"]
    report(f"n={args.n} dim={args.dim} k={args.k} metric={args.metric} index={args.index} queries={args.queries} "
           f"threads={args.threads} (one search per request; best of {args.repeat} rounds)", results, args, args.json)
    return results


if __name__ == "__main__":
    main()
