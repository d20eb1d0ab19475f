"""What a served request costs around the search (issue 27): the server against embedded, same data, same run.

A durable database (``--data``: copied first, the original is never opened for writing; without it, GloVe-50
rows loaded into a new HNSW collection here) is served by ``shoal serve`` (extra arguments: ``--server-args``,
e.g. ``"--workers 2"``) and opened read-only in this process for the embedded side. Measured:

* **one query per request** at each ``--clients`` level (client processes, each its own ``shoal.Client``,
  k ids and distances per request): aggregate QPS, p50 / p99 latency, and the server's CPU per
  request (utime + stime of the server and its reader processes over the level, from ``/proc``), next to
  the embedded CPU per call of the same search in this process. The served answers are checked
  against the embedded ones first;
* **batch QPS**: ``--batch`` queries per request, served and embedded;
* **upsert rows/s with payloads**: the same rows (3 payload fields each) into a new collection of the
  same kind, embedded (durable, in a temporary directory next to the copy) and over the wire
  (``Client.upsert``, streamed), alternating.

``--server-python`` runs the server with another interpreter (another checkout's virtual environment)
for an A/B comparison in one run. Server and clients share the machine's cores: say how loaded it was.
Run: ``python -m shoal.bench.served_overhead --data DB --collection g --clients 1,2,4,8,16``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import latency_percentiles


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (processes that exited meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU of a server and its reader processes between ``start`` and ``stop``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def start(self) -> None:
        self.pids = process_tree(self.pid)
        self.before = cpu_seconds(self.pids)

    def stop(self) -> float:
        return cpu_seconds(self.pids) - self.before


# ------------------------------------------------------------------------------------------ clients
def _client_worker(target: str, name: str, k: int, params: dict[str, Any], q: np.ndarray, ready: Any, go: Any,
                   out: Any, echo: bool) -> None:
    if echo:  # raw bytes of a search request's size to the bare grpcio server (bench/grpc_echo.py)
        import grpc

        from .grpc_echo import PATH

        call, request = grpc.insecure_channel(target).unary_unary(PATH), b"\1" * (4 * q.shape[1] + 48)

        def search(v: np.ndarray) -> None:
            call(request, timeout=60)
    else:
        import shoal

        col = shoal.Client(target).get_collection(name)

        def search(v: np.ndarray) -> None:
            col.search(v, k, params=params, include=("distance",))
    for v in q[:20]:
        search(v)
    ready.release()
    go.wait()
    lat = []
    for v in q:
        t0 = time.perf_counter()
        search(v)
        lat.append(time.perf_counter() - t0)
    out.put((lat, time.monotonic()))


def one_per_request(target: str, name: str, k: int, params: dict[str, Any], q: np.ndarray, n_clients: int,
                    cpu: ServerCpu, echo: bool = False) -> dict[str, Any]:
    """``n_clients`` processes, ``q`` split among them, one query per request (``echo``: to the bare grpcio
    server, a request of the same size per query)."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    parts = np.array_split(q, n_clients)
    procs = [ctx.Process(target=_client_worker, args=(target, name, k, params, part, ready, go, out, echo))
             for part in parts]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            if not ready.acquire(timeout=300):
                raise RuntimeError("clients did not connect")
        cpu.start()
        t0 = time.monotonic()
        go.set()
        results = [out.get(timeout=3600) for _ in procs]
        used = cpu.stop()
    finally:
        for p in procs:
            p.join(60)
    lat = [x for r in results for x in r[0]]
    wall = max(r[1] for r in results) - t0
    return {"clients": n_clients, "qps": len(q) / wall, "server_cpu_us": used / len(q) * 1e6,
            **latency_percentiles(lat)}


#: grpcio settings that might lower the floor (``bench/grpc_echo.py`` flags), tried by ``--echo-sweep``; the
#: last holds the GIL for 100 µs per call, like a search: is grpcio's cost additive around real work?
ECHO_VARIANTS = ("", "--executor threadpool", "--threads 1", "--threads 2", "--generic", "--max-concurrent 4",
                 "--aio", "--work-us 100")


def echo_sweep(python: str, work: str, q: np.ndarray, rounds: int) -> list[dict[str, Any]]:
    """One client against the bare grpcio server in each of ``ECHO_VARIANTS``, ``rounds`` times
    interleaved: server CPU per call and calls/s (min and max over the rounds)."""
    found: dict[str, list[dict[str, Any]]] = {v: [] for v in ECHO_VARIANTS}
    for _ in range(rounds):
        for variant in ECHO_VARIANTS:
            proc, target = start_echo(python, variant.split(), os.path.join(work, "echo-sweep.log"))
            try:
                found[variant].append(one_per_request(target, "", 0, {}, q, 1, ServerCpu(proc.pid), echo=True))
            finally:
                proc.terminate()
                proc.wait(60)
    return [{"variant": v or "(CallPool, 8 threads, registered method)",
             "cpu_us": [min(r["server_cpu_us"] for r in rows), max(r["server_cpu_us"] for r in rows)],
             "calls_per_s": [min(r["qps"] for r in rows), max(r["qps"] for r in rows)]} for v, rows in found.items()]


# ------------------------------------------------------------------------------------------ pieces
def embedded_cpu_us(col: Any, q: np.ndarray, k: int, params: dict[str, Any]) -> float:
    """CPU per one-query call of the embedded collection (this process, one thread)."""
    for v in q[:50]:
        col.search(v, k, params=params, include=("distance",))
    t0 = time.process_time()
    for v in q:
        col.search(v, k, params=params, include=("distance",))
    return (time.process_time() - t0) / len(q) * 1e6


def batch_qps(col: Any, q: np.ndarray, k: int, params: dict[str, Any], batch: int, rounds: int = 3) -> float:
    col.search(q[:batch], k, params=params, include=("distance",))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for lo in range(0, len(q), batch):
            col.search(q[lo:lo + batch], k, params=params, include=("distance",))
        best = min(best, time.perf_counter() - t0)
    return len(q) / best


def payloads(n: int) -> list[dict[str, Any]]:
    cats = ("news", "blog", "paper", "forum")
    return [{"g": i % 100, "cat": cats[i % 4], "year": 2000 + i % 25} for i in range(n)]


def upsert_pass(db: Any, name: str, x: np.ndarray, metric: str, chunk: int, server: ServerCpu | None = None
                ) -> dict[str, float]:
    """Upsert ``x`` with payloads into a new flat collection ``name`` of ``db`` (then dropped): rows/s and the
    CPU seconds per row of this process and (over the wire) of the server, which say more than wall time on
    a loaded machine."""
    col = db.create_collection(name, dim=x.shape[1], metric=metric, index="flat")
    meta = payloads(x.shape[0])
    ids = np.arange(x.shape[0])
    if server is not None:
        server.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for lo in range(0, x.shape[0], chunk):
        col.upsert(ids[lo:lo + chunk], x[lo:lo + chunk], meta[lo:lo + chunk])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    out = {"rows_per_s": x.shape[0] / seconds, "cpu_us_per_row": cpu / x.shape[0] * 1e6}
    if server is not None:
        out["server_cpu_us_per_row"] = server.stop() / x.shape[0] * 1e6
    db.drop_collection(name)
    return out


def upserts(client: Any, local_path: str, q: np.ndarray, args: argparse.Namespace, server: ServerCpu
            ) -> dict[str, Any]:
    """Rows/s with payloads, embedded (durable, ``local_path``) and over the wire, alternating so both see
    the same load; the first pair warms up (JIT, page cache) and is left out."""
    import shoal

    x = np.ascontiguousarray(np.resize(q, (args.upsert_rows, q.shape[1])))
    chunk = args.upsert_chunk or args.upsert_rows
    out: dict[str, Any] = {"rows": args.upsert_rows, "chunk": chunk, "embedded": [], "served": []}
    with shoal.Database(local_path) as local:
        for i in range(args.upsert_rounds + 1):
            pair = (upsert_pass(local, f"up{i}", x, "cosine", chunk),
                    upsert_pass(client, f"up{i}", x, "cosine", chunk, server))
            if i:
                out["embedded"].append(pair[0])
                out["served"].append(pair[1])
    ratios = [s["rows_per_s"] / e["rows_per_s"] for e, s in zip(out["embedded"], out["served"])]
    print(f"upsert rows/s with payloads ({args.upsert_rows:,} rows): served ÷ embedded "
          + ", ".join(f"{r:.2f}×" for r in ratios), flush=True)
    return out


def start_listening(cmd: Sequence[str], log_path: str, what: str) -> tuple[subprocess.Popen, str]:
    """Start ``cmd`` and wait for its ``listening on HOST:PORT`` line; its output goes to a file (an unread
    pipe would block it)."""
    log = open(log_path, "w")
    proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for line in Path(log_path).read_text().splitlines():
            if line.startswith("listening on "):
                return proc, "127.0.0.1:" + line.rsplit(":", 1)[1]
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{what} did not start; see {log_path}")


def start_server(python: str, data: str, extra: Sequence[str], log_path: str) -> tuple[subprocess.Popen, str]:
    """``shoal serve`` under ``python``."""
    return start_listening([python, "-m", "shoal", "serve", "--data", data, "--port", "0", *extra], log_path,
                           "shoal serve")


def start_echo(python: str, extra: Sequence[str], log_path: str) -> tuple[subprocess.Popen, str]:
    """The bare grpcio server (``bench/grpc_echo.py``) under ``python``."""
    return start_listening([python, "-m", "shoal.bench.grpc_echo", "--port", "0", *extra], log_path, "the echo server")


def _build(path: str, n: int, queries: int) -> tuple[str, np.ndarray]:
    """GloVe-50 rows loaded into a durable HNSW collection at ``path`` (no --data)."""
    import shoal
    from .datasets import glove50

    data = glove50(n=n, n_test=queries)
    with shoal.Database(path) as db:
        col = db.create_collection("g", dim=50, metric="cosine", index="hnsw")
        for lo in range(0, data.train.shape[0], 5000):
            col.upsert(np.arange(lo, min(lo + 5000, data.train.shape[0])), data.train[lo:lo + 5000])
        col.optimize(wait=True)
    return "g", data.test


# ------------------------------------------------------------------------------------------ run
def run(args: argparse.Namespace) -> dict[str, Any]:
    import shoal

    work = tempfile.mkdtemp(prefix="shoal-overhead-", dir=args.work_dir)
    try:
        data = os.path.join(work, "db")
        if args.data:
            shutil.copytree(args.data, data)
            name = args.collection
            from .datasets import glove50

            q = glove50(n=args.n, n_test=args.queries).test
        else:
            name, q = _build(data, args.n, args.queries)
        q = np.ascontiguousarray(q[: args.queries], dtype=np.float32)
        params = {"ef_search": args.ef}
        python = args.server_python or sys.executable
        proc, target = start_server(python, data, args.server_args.split(), os.path.join(work, "server.log"))
        echo = start_echo(python, args.echo_args.split(), os.path.join(work, "echo.log")) if args.echo else None
        result: dict[str, Any] = {"server_args": args.server_args, "server_python": args.server_python or sys.executable,
                                  "queries": len(q), "k": args.k, "params": params, "levels": []}
        try:
            cpu = ServerCpu(proc.pid)
            embedded = shoal.Database(data, read_only=True).get_collection(name)
            client = shoal.Client(target)
            remote = client.get_collection(name)
            mine = [embedded.search(v, args.k, params=params, include=("distance",)).ids for v in q[:50]]
            theirs = [remote.search(v, args.k, params=params, include=("distance",)).ids for v in q[:50]]
            result["served_equals_embedded"] = mine == theirs
            for n_clients in args.clients:
                emb = embedded_cpu_us(embedded, q, args.k, params)  # beside each level: the load changes
                row = one_per_request(target, name, args.k, params, q, n_clients, cpu)
                row["embedded_cpu_us"] = emb
                if echo is not None:  # the same clients against grpcio doing nothing, right after
                    row["echo"] = one_per_request(echo[1], name, args.k, params, q, n_clients,
                                                  ServerCpu(echo[0].pid), echo=True)
                result["levels"].append(row)
                print(f"clients={n_clients:3d} QPS={row['qps']:7.0f} p50={row['p50_ms']:.3f} ms "
                      f"p99={row['p99_ms']:.3f} ms server CPU/request={row['server_cpu_us']:6.0f} µs "
                      f"(embedded {emb:.0f} µs" + (f", grpcio echo {row['echo']['server_cpu_us']:.0f} µs"
                                                   if echo else "") + ")", flush=True)
            if args.echo_sweep:
                result["echo_sweep"] = echo_sweep(python, work, q, args.echo_sweep)
            if args.batch:
                on_thread: list[float] = []  # the server runs calls on pool threads; Numba's OpenMP pool
                worker = threading.Thread(  # behaves differently there than on a main thread
                    target=lambda: on_thread.append(batch_qps(embedded, q, args.k, params, args.batch)))
                worker.start()
                worker.join()
                result["batch"] = {"size": args.batch, "served_qps": batch_qps(remote, q, args.k, params, args.batch),
                                   "embedded_qps": batch_qps(embedded, q, args.k, params, args.batch),
                                   "embedded_thread_qps": on_thread[0]}
                print(f"batch of {args.batch}: served {result['batch']['served_qps']:,.0f} QPS, embedded "
                      f"{result['batch']['embedded_qps']:,.0f} QPS", flush=True)
            if args.upsert_rows:
                result["upsert"] = upserts(client, os.path.join(work, "embedded-upserts"), q, args, cpu)
            client.close()
        finally:
            for p in (proc, *(() if echo is None else (echo[0],))):
                p.terminate()
                p.wait(60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average"] = os.getloadavg()
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"server `{result['server_args'] or '(defaults)'}`, k={result['k']}, {result['params']}, "
             f"{result['queries']} queries per level, served == embedded: {result['served_equals_embedded']}", "",
             "| clients | QPS | p50 ms | p99 ms | server CPU µs/request | embedded CPU µs/call | overhead µs |"
             " grpcio echo CPU µs/call | echo calls/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["levels"]:
        echo = r.get("echo")
        lines.append(f"| {r['clients']} | {r['qps']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['server_cpu_us']:.0f} | {r['embedded_cpu_us']:.0f} | "
                     f"{r['server_cpu_us'] - r['embedded_cpu_us']:.0f} | "
                     + (f"{echo['server_cpu_us']:.0f} | {echo['qps']:,.0f} |" if echo else "- | - |"))
    lines.append("")
    if "echo_sweep" in result:
        lines += ["bare grpcio server, 1 client (min-max over the rounds):", "",
                  "| variant | server CPU µs/call | calls/s |", "|---|---:|---:|"]
        for v in result["echo_sweep"]:
            lines.append(f"| {v['variant']} | {v['cpu_us'][0]:.0f}-{v['cpu_us'][1]:.0f} | "
                         f"{v['calls_per_s'][0]:,.0f}-{v['calls_per_s'][1]:,.0f} |")
        lines.append("")
    if "batch" in result:
        b = result["batch"]
        lines.append(f"batch of {b['size']}: served {b['served_qps']:,.0f} QPS, embedded {b['embedded_qps']:,.0f} QPS "
                     f"on the main thread, {b['embedded_thread_qps']:,.0f} on another thread (served ÷ best embedded "
                     f"{b['served_qps'] / max(b['embedded_qps'], b['embedded_thread_qps']):.2f}×)")
    if "upsert" in result:
        u = result["upsert"]
        emb, srv = u["embedded"], u["served"]
        ratios = sorted(s["rows_per_s"] / e["rows_per_s"] for e, s in zip(emb, srv))
        lines.append(f"upsert with payloads ({u['rows']:,} rows, {u['chunk']:,} per call, {len(emb)} pairs): embedded "
                     + ", ".join(f"{e['rows_per_s']:,.0f}" for e in emb) + " rows/s; served "
                     + ", ".join(f"{s['rows_per_s']:,.0f}" for s in srv) + " rows/s; served ÷ embedded pairwise "
                     + ", ".join(f"{r:.2f}×" for r in ratios) + f" (median {ratios[len(ratios) // 2]:.2f}×)")
        lines.append("  CPU µs/row: embedded " + ", ".join(f"{e['cpu_us_per_row']:.2f}" for e in emb)
                     + "; served: server " + ", ".join(f"{s['server_cpu_us_per_row']:.2f}" for s in srv)
                     + ", client " + ", ".join(f"{s['cpu_us_per_row']:.2f}" for s in srv))
    lines.append(f"load average {result['load_average'][0]:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="durable database to copy (default: build one from GloVe-50)")
    p.add_argument("--collection", default="g")
    p.add_argument("--n", type=int, default=100_000, help="GloVe rows (the queries are held-out words)")
    p.add_argument("--queries", type=int, default=2000, help="queries per concurrency level")
    p.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 2, 4, 8, 16])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--ef", type=int, default=64, help="ef_search")
    p.add_argument("--batch", type=int, default=100, help="queries per batch request (0: skip)")
    p.add_argument("--upsert-rows", type=int, default=20_000, help="rows of the upsert comparison (0: skip)")
    p.add_argument("--upsert-rounds", type=int, default=5, help="embedded / served pairs of the upsert comparison "
                   "(after one warm-up pair)")
    p.add_argument("--upsert-chunk", type=int, default=0, help="rows per upsert call (0: all in one call; "
                   "the client streams a large one in chunks)")
    p.add_argument("--server-args", default="", help="extra shoal serve arguments, e.g. '--workers 2'")
    p.add_argument("--echo", action="store_true", help="also measure a bare grpcio server (bench/grpc_echo.py) with "
                   "the same clients at every level: grpcio's own CPU per call, the floor under ours")
    p.add_argument("--echo-args", default="", help="grpc_echo flags for --echo, e.g. '--threads 1'")
    p.add_argument("--echo-sweep", type=int, default=0, help="rounds of 1-client passes over the grpcio settings in "
                   "ECHO_VARIANTS (0: skip)")
    p.add_argument("--server-python", help="interpreter for the server (A/B against another checkout)")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    result = run(args)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
