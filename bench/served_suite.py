"""``shoal bench --suite served``: Shoal's gRPC server against Chroma's HTTP server, same data.

Each database is loaded embedded into a directory (Shoal: ``optimize(wait=True)``, so every row is in
an indexed segment; Chroma: ``PersistentClient``), then served by its own server process: ``shoal serve
--data DIR`` and ``chroma run --path DIR --port P``. Clients are separate processes (one SDK client
each, one query per request, k nearest ids only); each level of concurrency runs every client against
its share of the queries at once, after a warm-up. Reported per engine and concurrency: aggregate QPS
(queries / wall time from the common start to the last answer), p50 / p99 latency per request and
recall@k of the served answers. The search setting is the fastest that reaches the recall target with
one client (Shoal's plan for it comes from ``explain`` on the loaded collection).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .datasets import Dataset, ground_truth
from .db_engines import NAME, ChromaDb, DbEngine, ShoalDb, fill, split_available
from .metrics import latency_percentiles, recall_at_k
from .plans import describe, merge

#: Engines the served suite knows, with the package each needs.
SERVED = {"shoal": "shoal", "chroma": "chromadb"}


@dataclass
class ServedConfig:
    k: int = 10
    threads: int = 2
    clients: tuple[int, ...] = (1, 4)
    #: Queries per concurrency level (split across the clients).
    queries: int = 1000
    target: float = 0.95
    batch: int = 5000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- per engine, served
class ServedEngine:
    """A database loaded embedded, then served by its own server process at ``target``."""

    library = ""
    EMBEDDED: type[DbEngine]

    @property
    def settings(self) -> tuple[dict[str, Any], ...]:
        return self.EMBEDDED.SETTINGS

    def load(self, path: str, data: Dataset, cfg: ServedConfig) -> None:
        engine = self.EMBEDDED(path, data.train.shape[1], data.metric, cfg.threads)
        fill(engine, data.train, {"g": np.arange(data.train.shape[0]) % 100}, cfg.batch)
        self.loaded(engine, data, cfg)
        engine.close()

    def loaded(self, engine: Any, data: Dataset, cfg: ServedConfig) -> None:
        """Hook: look at the loaded database before it is closed and served."""

    def plan(self, setting: dict[str, Any]) -> dict[str, Any]:
        return {"path": "unreported", "segments": {}, "fallback_queries": 0, "queries": 0}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class ServedShoal(ServedEngine):
    """``shoal serve --data DIR`` (its Numba pool uses every core, like Chroma's server)."""

    library = "shoal"
    EMBEDDED = ShoalDb

    def loaded(self, engine: Any, data: Dataset, cfg: ServedConfig) -> None:
        self.plans = {str(s): merge(engine.plan(v, cfg.k, None, s) for v in data.test[:20]) for s in self.settings}

    def start(self, path: str, cfg: ServedConfig) -> None:
        from ..rpc.cli import spawn

        self.proc, port = spawn(["--data", path, "--port", "0"], stderr=subprocess.DEVNULL)
        self.target = f"127.0.0.1:{port}"

    def plan(self, setting: dict[str, Any]) -> dict[str, Any]:
        return self.plans[str(setting)]


class ServedChroma(ServedEngine):
    """``chroma run --path DIR --port P``."""

    library = "chroma"
    EMBEDDED = ChromaDb

    def start(self, path: str, cfg: ServedConfig) -> None:
        exe = shutil.which("chroma", path=os.path.dirname(sys.executable)) or shutil.which("chroma")
        if exe is None:
            raise RuntimeError("the chroma command (from the chromadb package) is not on PATH")
        port = _free_port()
        self.proc = subprocess.Popen([exe, "run", "--path", path, "--port", str(port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
        self.target = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                _client("chroma", self.target).heartbeat()
                return
            except Exception:  # noqa: BLE001 - not listening yet (the client raises several kinds)
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("chroma run did not start within 60 s")


ENGINES = {"shoal": ServedShoal, "chroma": ServedChroma}


# ------------------------------------------------------------------------------------------ clients
def _client(engine: str, target: str) -> Any:
    if engine == "shoal":
        import shoal

        return shoal.Client(target)
    import chromadb

    host, port = target.rsplit(":", 1)
    return chromadb.HttpClient(host=host, port=int(port), settings=chromadb.Settings(anonymized_telemetry=False))


def _searcher(engine: str, client: Any, k: int, setting: dict[str, Any]) -> Any:
    if engine == "shoal":
        col = client.get_collection(NAME)
        return lambda v: col.search(v, k, params=setting, include=()).ids
    col = client.get_collection(NAME, embedding_function=None)
    return lambda v: [int(i) for i in col.query(query_embeddings=v[None, :], n_results=k, include=[])["ids"][0]]


def _configure(engine: str, target: str, setting: dict[str, Any]) -> None:
    """Set a Chroma collection's ef_search once, before the clients start: it is a collection
    setting, and several clients modifying it at once met "database is locked" in the server."""
    ef = setting.get("ef_search")
    if engine == "shoal" or ef is None:
        return
    col = _client(engine, target).get_collection(NAME, embedding_function=None)
    if col.configuration.get("hnsw", {}).get("ef_search") != ef:
        col.modify(configuration={"hnsw": {"ef_search": int(ef)}})


def client_worker(engine: str, target: str, k: int, setting: dict[str, Any], q: np.ndarray, part: int,
                  ready: Any, go: Any, out: Any) -> None:
    """One client process: connect, warm up, wait for the common start, then one query per request."""
    client = _client(engine, target)
    search = _searcher(engine, client, k, setting)
    for v in q[:5]:
        search(v)
    ready.release()
    go.wait()
    lat, found = [], []
    for v in q:
        t0 = time.monotonic()
        found.append(search(v))
        lat.append(time.monotonic() - t0)
    out.put((part, lat, found, time.monotonic()))  # CLOCK_MONOTONIC is system-wide: comparable across processes


def run_clients(engine: str, target: str, cfg: ServedConfig, setting: dict[str, Any], q: np.ndarray,
                truth: np.ndarray, n_clients: int) -> dict[str, Any]:
    """``n_clients`` processes over ``q`` split among them: aggregate QPS, latency, recall."""
    _configure(engine, target, setting)
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    parts = np.array_split(np.arange(q.shape[0]), n_clients)
    procs = [ctx.Process(target=client_worker, args=(engine, target, cfg.k, setting, q[rows], i, ready, go, out))
             for i, rows in enumerate(parts)]
    for p in procs:
        p.start()
    try:
        deadline, connected = time.monotonic() + 300, 0
        while connected < len(procs):
            if ready.acquire(timeout=0.5):
                connected += 1
            elif time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"{engine} clients failed to connect (exit codes {[p.exitcode for p in procs]})")
        t0 = time.monotonic()
        go.set()
        results = sorted((out.get(timeout=3600) for _ in procs), key=lambda r: r[0])
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    found = [ids for r in results for ids in r[2]]
    lat = [x for r in results for x in r[1]]
    return {"clients": n_clients, "qps": q.shape[0] / (max(r[3] for r in results) - t0),
            "recall": recall_at_k(found, truth, cfg.k), **latency_percentiles(lat)}


def choose_setting(engine: str, target: str, cfg: ServedConfig, settings: Sequence[dict[str, Any]],
                   q: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """One client in this process over each setting (a short pass), to pick the one reaching the target."""
    client = _client(engine, target)
    points = []
    for s in settings:
        search = _searcher(engine, client, cfg.k, s)
        search(q[0])
        t0 = time.monotonic()
        found = [search(v) for v in q]
        points.append({"setting": s, "qps": len(q) / (time.monotonic() - t0), "recall": recall_at_k(found, truth, cfg.k)})
    return points


def run_served_suite(data: Dataset, engines: Sequence[str], cfg: ServedConfig,
                     work_dir: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Per engine: the settings pass and one row per concurrency level at the chosen setting."""
    from .db_worker import choose

    truth = ground_truth(data, cfg.k)
    q = np.ascontiguousarray(data.test[: cfg.queries])
    truth = truth[: q.shape[0]]
    ready, skipped = split_available(engines, SERVED)
    rows: list[dict[str, Any]] = []
    for name in ready:
        print(f"served suite: {name} ...", flush=True)
        server = ENGINES[name]()
        with tempfile.TemporaryDirectory(dir=work_dir, prefix=f"shoal-served-{name}-") as path:
            server.load(path, data, cfg)
            server.start(path, cfg)
            try:
                short = min(q.shape[0], 200)
                sweep = choose_setting(name, server.target, cfg, server.settings, q[:short], truth[:short])
                chosen = choose(sweep, cfg.target)
                for n_clients in cfg.clients:
                    row = run_clients(name, server.target, cfg, chosen["setting"], q, truth, n_clients)
                    rows.append({"engine": name, "setting": chosen["setting"], "below": chosen["below"],
                                 "plan": server.plan(chosen["setting"]), **row})
            finally:
                server.stop()
    return rows, skipped


def served_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| engine | clients | setting | plan | QPS | recall | p50 ms | p99 ms |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        setting = " ".join(f"{k}={v}" for k, v in r["setting"].items())
        setting = f"*{setting}, below target*" if r["below"] else setting
        plan = "–" if r["plan"]["path"] == "unreported" else describe(r["plan"])
        lines.append(f"| {r['engine']} | {r['clients']} | {setting} | {plan} | {r['qps']:,.0f} | {r['recall']:.3f} "
                     f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    return "\n".join(lines)


def served_ratios(rows: Sequence[dict[str, Any]]) -> str:
    """Shoal ÷ peer at each concurrency: QPS, and the inverse for p50 / p99 (> 1: Shoal better)."""
    mine = {r["clients"]: r for r in rows if r["engine"] == "shoal"}
    lines = ["| Shoal vs | clients | QPS | p50 | p99 |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        m = mine.get(r["clients"])
        if r["engine"] == "shoal" or m is None:
            continue
        lines.append(f"| {r['engine']} | {r['clients']} | {m['qps'] / r['qps']:.2f}× | {r['p50_ms'] / m['p50_ms']:.2f}× "
                     f"| {r['p99_ms'] / m['p99_ms']:.2f}× |")
    return "\n".join(lines) if len(lines) > 2 else ""


def served_markdown(payload: dict[str, Any]) -> str:
    from .report import machine_text

    m, d = payload["machine"], payload["dataset"]
    parts = [f"**{d['name']}** ({d['n_train']:,} × {d['dim']}, {d['metric']}, k={payload['k']}, "
             f"{payload['queries']} queries per level, one per request) on {machine_text(m)}; "
             f"server and clients share the cores, {m['date'][:10]}.", "", served_table(payload["rows"])]
    ratios = served_ratios(payload["rows"])
    if ratios:
        parts += ["", "Shoal's advantage (× > 1: Shoal better):", "", ratios]
    if payload.get("skipped"):
        parts += ["", "Skipped: " + "; ".join(payload["skipped"])]
    return "\n".join(parts)
