"""One ``shoal serve`` subprocess for all integration tests, and a fresh collection per test.

``backend`` is "embedded" (an in-memory ``shoal.Database``) or "served" (a ``shoal.Client`` on the
shared server); each served collection has a unique name and is dropped after its test.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

import shoal


@pytest.fixture(scope="session")
def shoal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from shoal.rpc.cli import spawn

    log = tmp_path_factory.mktemp("integrations") / "server.log"
    with open(log, "w") as err:
        proc, port = spawn(["--port", "0"], stderr=err)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="session")
def shoal_client(shoal_server: str) -> Iterator[shoal.Client]:
    with shoal.Client(shoal_server, timeout=20) as client:
        yield client


@pytest.fixture
def make_collection(request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """``make_collection(backend, dim, **options)``: an empty collection, dropped afterwards when served."""
    served: list[str] = []

    def make(backend: str, dim: int, **options: object) -> object:
        if backend == "embedded":
            return shoal.Database().create_collection("test", dim, **options)
        client = request.getfixturevalue("shoal_client")
        name = f"it-{uuid.uuid4().hex[:12]}"
        served.append(name)
        return client.create_collection(name, dim, **options)

    yield make
    if served:
        client = request.getfixturevalue("shoal_client")
        for name in served:
            client.drop_collection(name)
