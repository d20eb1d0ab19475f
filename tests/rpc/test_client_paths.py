"""Client SDK paths no other test took: get_or_create, Client.compact, len(), a collection's snapshot,
TLS without the server's root certificate, and the retry of a streamed upsert."""
from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

import shoal
from shoal.engine import errors
from shoal.rpc.server import PointsServicer, build_server
from tests.rpc.conftest import self_signed_cert


@pytest.fixture
def served(tmp_path: Path):
    db = shoal.Database()
    server = build_server(db, "127.0.0.1", 0, snapshot_dir=tmp_path / "snaps")
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=20) as client:
            yield db, client, tmp_path / "snaps"
    finally:
        server.stop(grace=1)


def test_get_or_create_len_compact_and_collection_snapshot(served, tmp_path: Path) -> None:
    db, client, snaps = served
    col = client.get_or_create_collection("goc", dim=3, metric="l2", index="Flat",
                                          optimizer={"background": False})  # compact() does the vacuum
    assert (col.dim, col.metric, col.index_spec) == (3, "l2", "Flat") and db.get_collection("goc").metric == "l2"
    col.upsert([1, 2, 3], np.eye(3))
    again = client.get_or_create_collection("goc", dim=3)  # exists with that dim: returned as it is
    assert (again.dim, again.metric) == (3, "l2") and len(again) == 3 == len(db.get_collection("goc"))
    with pytest.raises(errors.CollectionConfigMismatchError, match="dim=3, not 99"):  # issue 19
        client.get_or_create_collection("goc", dim=99, metric="ip")
    assert client.list_collections() == ["goc"]
    client.create_collection("other", dim=2).upsert(["a"], [[1.0, 0.0]])
    assert client.compact() == {"goc": False, "other": False}  # nothing deleted yet
    col.delete(ids=[2])
    assert client.compact() == {"goc": True, "other": False} and len(col) == 2
    col.snapshot("goc-snap")
    with pytest.raises(errors.AlreadyExistsError):
        col.snapshot("goc-snap")
    restored = tmp_path / "restored" / "collections" / "goc"
    shutil.copytree(snaps / "goc-snap", restored)  # a collection snapshot is one collection's directory
    with shoal.Database(tmp_path / "restored") as copy:
        got = copy.get_collection("goc")
        assert len(got) == 2 and got.get([1, 3]).ids == [1, 3]
        np.testing.assert_array_equal(got.get([3]).vectors, [[0.0, 0.0, 1.0]])


def test_streamed_upsert_is_retried_from_its_first_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = PointsServicer.UpsertStream

    def flaky(self, request_iterator, context):  # noqa: ANN001, ANN202
        if not seen:
            chunk = next(request_iterator)  # read one chunk, then drop the call
            seen.append(len(chunk.ids) + len(chunk.int_ids))  # int ids travel packed (issue 27)
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        seen.append(-1)
        return real(self, request_iterator, context)

    monkeypatch.setattr(PointsServicer, "UpsertStream", flaky)
    db = shoal.Database()
    server = build_server(db, "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=20, batch_size=100, backoff=0.01) as c:
            col = c.create_collection("s", dim=4, metric="l2")
            x = np.random.default_rng(0).standard_normal((350, 4)).astype(np.float32)
            assert col.upsert(list(range(350)), x, [{"i": i} for i in range(350)]) == 350  # 4 chunks
            assert seen == [100, -1]  # one refused attempt, then the whole stream again
            assert col.count() == 350 and db.get_collection("s").get([349]).metadata == [{"i": 349}]
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=20, batch_size=100, retries=0) as c:
            seen.clear()
            with pytest.raises(errors.UnavailableError, match="restarting"):
                c.get_collection("s").upsert(list(range(400, 750)), x)
            assert db.get_collection("s").count() == 350  # the refused stream applied nothing
    finally:
        server.stop(grace=1)


def test_tls_without_the_servers_root_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server = build_server(shoal.Database(), "127.0.0.1", 0, tls_cert=cert.read_bytes(), tls_key=key.read_bytes())
    try:
        target = f"127.0.0.1:{server.port}"
        with shoal.Client(target, tls=True, timeout=5, retries=0) as c:  # system roots: self-signed is unknown
            with pytest.raises(errors.UnavailableError):
                c.list_collections()
        with shoal.Client(target, tls=True, root_certificates=cert.read_bytes(), timeout=20) as c:
            assert c.list_collections() == []
    finally:
        server.stop(grace=1)
