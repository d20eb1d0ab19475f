"""The implementations the contract suite (``test_contract.py``) runs against.

Each entry maps a name to a context-manager factory ``(tmp_path) -> database`` whose result has the
``Database`` API (``create_collection``, ``get_collection``, ``get_or_create_collection``,
``list_collections``, ``drop_collection``, ``rename_collection``) and whose collections have the
``Collection`` API. Another implementation (a distributed cluster, an HTTP client) plugs in by
adding an entry here; every contract test then runs against it too.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ContextManager

import pytest

import shoal


@contextlib.contextmanager
def embedded(tmp_path: Path) -> Iterator[Any]:
    db = shoal.Database(tmp_path / "embedded")
    try:
        yield db
    finally:
        db.close()


_SERVER: dict[str, Any] = {}


def _shared_server() -> Any:
    """One in-process gRPC server over an in-memory database for the whole session."""
    if "server" not in _SERVER:
        from shoal.rpc.server import build_server

        _SERVER["server"] = build_server(shoal.Database(), port=0)
    return _SERVER["server"]


@contextlib.contextmanager
def served(tmp_path: Path) -> Iterator[Any]:
    server = _shared_server()
    with shoal.Client(f"127.0.0.1:{server.port}", timeout=60) as client:
        try:
            yield client
        finally:
            for name in client.list_collections():
                client.drop_collection(name)


class _Sync:
    """Runs an ``AsyncClient`` (or one of its collections) on a private event loop, so the blocking
    contract drives the coroutine API: same calls, same results, same errors."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target, self._loop = target, loop

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name == "iter":
            return functools.partial(self._iter, attr)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._wait(attr(*args, **kwargs))
            return _Sync(result, self._loop) if hasattr(result, "_client") else result
        return call

    def _iter(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        async def collect() -> list[Any]:
            return [r async for r in method(*args, **kwargs)]
        return iter(self._wait(collect()))

    def __len__(self) -> int:
        return self._wait(self._target.count())


@contextlib.contextmanager
def served_async(tmp_path: Path) -> Iterator[Any]:
    server = _shared_server()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = asyncio.run_coroutine_threadsafe(_connect(f"127.0.0.1:{server.port}"), loop).result()
    sync = _Sync(client, loop)
    try:
        yield sync
    finally:
        for name in sync.list_collections():
            sync.drop_collection(name)
        asyncio.run_coroutine_threadsafe(client.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _connect(target: str) -> Any:
    return shoal.AsyncClient(target, timeout=60)


_CLUSTER: dict[str, Any] = {}


def _shared_cluster() -> Any:
    """One local Ray instance (2 CPUs, small object store) and one RayDatabase whose collections have
    2 shards, for the whole contract module (``close_shared_cluster`` stops it)."""
    if "db" not in _CLUSTER:
        pytest.importorskip("ray", reason="the ray implementation needs the 'cluster' extra")
        from shoal.cluster import RayDatabase

        _CLUSTER["root"] = tempfile.mkdtemp(prefix="shoal-contract-ray-")
        _CLUSTER["db"] = RayDatabase(_CLUSTER["root"], num_cpus=2, object_store_memory=128 << 20, shards=2,
                                     unavailable_after=5.0, call_timeout=60.0)
    return _CLUSTER["db"]


@contextlib.contextmanager
def ray_cluster(tmp_path: Path) -> Iterator[Any]:
    db = _shared_cluster()
    try:
        yield db
    finally:
        for name in db.list_collections():
            db.drop_collection(name)


def close_shared_cluster() -> None:
    """Shut the contract module's Ray instance down (other test modules start their own)."""
    db = _CLUSTER.pop("db", None)
    if db is not None:
        db.close()
        shutil.rmtree(_CLUSTER.pop("root"), ignore_errors=True)


IMPLEMENTATIONS: dict[str, Callable[[Path], ContextManager[Any]]] = {
    "embedded": embedded,
    "served": served,
    "served-async": served_async,
    "ray": ray_cluster,
}
