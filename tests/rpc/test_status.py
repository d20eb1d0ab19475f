"""Status messages stay within what gRPC can carry (issue 15: Get(name="x"*100000) came back as
RESOURCE_EXHAUSTED about header size instead of NOT_FOUND)."""
from __future__ import annotations

import pytest

import shoal
from shoal.engine import errors
from shoal.rpc.server import build_server
from shoal.rpc.status import MAX_DETAILS


def test_huge_echoed_input_still_gets_its_own_status() -> None:
    db = shoal.Database()
    for i in range(200):
        db.create_collection(f"c{i}-" + "n" * 50, dim=2)
    server = build_server(db, "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
            for name in ("x" * 100_000, "y" * 60):
                with pytest.raises((errors.NotFoundError, errors.InvalidArgumentError)) as info:
                    c.get_collection(name)
                assert info.value.grpc_code in ("NOT_FOUND", "INVALID_ARGUMENT")
                assert len(str(info.value)) <= MAX_DETAILS + 40
    finally:
        server.stop(grace=1)
