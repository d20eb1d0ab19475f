"""Payload indexes declared and dropped over gRPC (the SDK, sync and async) and the HTTP gateway:
the same results and errors as embedded, durably on a durable server."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import shoal
from shoal import InvalidArgumentError
from shoal.engine.errors import PayloadIndexNotFoundError

from .http_support import JsonClient, servers

ROWS = 900


def _filled(db: shoal.Database) -> None:
    col = db.create_collection("c", dim=4, metric="l2")
    rng = np.random.default_rng(0)
    col.upsert(list(range(ROWS)), rng.standard_normal((ROWS, 4)).astype(np.float32),
               [{"tag": f"t{i % 30}", "tags": [f"t{i % 7}", f"u{i % 50}"], "year": 1990 + i % 20} for i in range(ROWS)])
    col.flush()


def test_sdk_and_http_declare_and_drop(tmp_path):
    with servers(shoal.Database(tmp_path / "db", flush_rows=300)) as s:
        _filled(s.db)
        with shoal.Client(s.target, timeout=20) as client:
            col = client.get_collection("c")
            assert col.describe()["payload_indexes"] is None
            assert col.create_payload_index("tags", "keyword") is True
            assert col.create_payload_index("tags", "keyword") is False
            assert col.describe()["payload_indexes"] == {"tags": "keyword"}
            assert col.count({"tags": "u3"}) == sum(1 for i in range(ROWS) if i % 50 == 3)
            plan = col.search(np.zeros(4, np.float32), k=3, filter={"tags": "u3"}, explain=True).plan
            assert "payload index" in {p["filter_source"] for p in plan}
            for call, error, code in (
                    (lambda: col.create_payload_index("year", "bitmap"), InvalidArgumentError, "INVALID_ARGUMENT"),
                    (lambda: col.create_payload_index("tags", "range"), InvalidArgumentError, "INVALID_ARGUMENT"),
                    (lambda: col.create_payload_index(3, "range"), InvalidArgumentError, None),  # refused client-side
                    (lambda: col.drop_payload_index("year"), PayloadIndexNotFoundError, "NOT_FOUND")):
                with pytest.raises(error) as caught:
                    call()
                assert code is None or caught.value.grpc_code == code
            assert col.describe()["payload_indexes"] == {"tags": "keyword"}
        api = JsonClient(s.base)
        body = api.ok("POST", "/shoal.v1.Collections/CreatePayloadIndex",
                      {"collection": "c", "field": "year", "kind": "range"})
        assert body["changed"] is True and body["info"]["payload_indexes"] == {"tags": "keyword", "year": "range"}
        bad = api("POST", "/shoal.v1.Collections/DropPayloadIndex", {"collection": "c", "field": "nope"})
        assert bad.status == 404 and bad.error["class"] == "PayloadIndexNotFoundError"

        async def drop_async():
            async with shoal.AsyncClient(s.target, timeout=20) as aclient:
                acol = await aclient.get_collection("c")
                await acol.drop_payload_index("year")
                return await acol.describe()

        assert asyncio.run(drop_async())["payload_indexes"] == {"tags": "keyword"}
    with shoal.Database(tmp_path / "db") as db:  # durable: the server's declaration survives it
        assert db.get_collection("c").describe()["payload_indexes"] == {"tags": "keyword"}
