"""Server lifecycle: auth on/off, graceful SIGTERM, UNAVAILABLE while draining, retries, restart durability."""
from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import shoal
from shoal.engine import errors
from shoal.rpc.server import build_server
from tests.conftest import wait_for
from tests.rpc.conftest import self_signed_cert, start_server


def test_api_key_required_when_configured(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    srv = start_server(tmp_path, "--api-key-file", str(key_file))
    try:
        for key, match in ((None, "missing API key"), ("wrong", "wrong API key"), ("s3cret-ke", "wrong API key")):
            with shoal.Client(srv.target, api_key=key, timeout=20) as c:
                with pytest.raises(errors.AuthenticationError, match=match) as info:
                    c.create_collection("x", dim=2)
                assert info.value.grpc_code == "UNAUTHENTICATED"
        with shoal.Client(srv.target, api_key="s3cret-key", timeout=20) as c:
            assert c.list_collections() == []  # the refused create changed nothing
            c.create_collection("x", dim=2).upsert([1], [[0.5, 0.5]])
            assert c.get_collection("x").count() == 1
        with grpc.insecure_channel(srv.target) as channel:  # health stays open for probes
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=20)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            raw = channel.unary_unary("/shoal.v1.Collections/List", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
            assert raw(b"", timeout=20, metadata=(("x-api-key", "s3cret-key"),)) == b"\n\x01x"  # names: ["x"]
            with pytest.raises(grpc.RpcError) as info:
                raw(b"", timeout=20)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert srv.stop() == 0


def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--access-log")  # off by default (issue 27): its lines are checked below
    stop = threading.Event()
    outcomes: list[str] = []
    with shoal.Client(srv.target, timeout=20, retries=0) as c:
        col = c.create_collection("g", dim=4, metric="l2")
        col.upsert(list(range(50)), np.random.default_rng(0).standard_normal((50, 4)))

        def searcher() -> None:
            while not stop.is_set():
                try:
                    col.search(np.ones(4), k=3)
                    outcomes.append("ok")
                except errors.UnavailableError:
                    outcomes.append("unavailable")
                    return
                except errors.CancelledError:  # reached the server as gRPC stopped, before a handler ran
                    outcomes.append("cancelled")
                    return

        th = threading.Thread(target=searcher)
        th.start()
        wait_for(lambda: "ok" in outcomes, what="a search before SIGTERM")  # in flight, not slept on
        assert srv.stop(signal.SIGTERM) == 0
        stop.set()
        th.join(10)
    assert "ok" in outcomes and set(outcomes) <= {"ok", "unavailable", "cancelled"}
    log = srv.output()
    assert "shutdown requested" in log and "database closed" in log
    assert "method=/shoal.v1.Search/Search code=OK" in log and "request_id=" in log and "latency_ms=" in log


def test_calls_during_shutdown_are_unavailable() -> None:
    server = build_server(shoal.Database(), "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=10, retries=2, backoff=0.01) as c:
            c.create_collection("a", dim=2)
            server.state.draining.set()  # what stop() does first, before in-flight calls finish
            with pytest.raises(errors.UnavailableError, match="shutting down") as info:
                c.list_collections()
            assert info.value.grpc_code == "UNAVAILABLE"
    finally:
        server.stop(grace=1)


def test_admin_call_missing_from_the_database_is_unimplemented(tmp_path: Path) -> None:
    class NoSnapshotDatabase(shoal.Database):
        snapshot = None  # a storage layer without snapshots

    server = build_server(NoSnapshotDatabase(), "127.0.0.1", 0, snapshot_dir=tmp_path)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
            col = c.create_collection("a", dim=2)
            with pytest.raises(errors.UnimplementedError, match="snapshot") as info:
                c.snapshot("snap")
            assert info.value.grpc_code == "UNIMPLEMENTED" and not (tmp_path / "snap").exists()
            col.upsert([1], [[1.0, 2.0]])
            c.flush()  # the Database has no flush(): each collection's runs, sealing its growing segment
            (growing,) = [s for s in col.stats()["segment_list"] if s["state"] == "growing"]
            assert growing["rows"] == 0 and col.count() == 1
    finally:
        server.stop(grace=1)


def test_idempotent_calls_retry_until_the_server_is_up(tmp_path: Path) -> None:
    """A read issued before the server listens succeeds once it does (backoff on UNAVAILABLE)."""
    hold = socket.socket()  # the OS picks the port; bound but not listening, it is ours and refuses
    hold.bind(("127.0.0.1", 0))  # connections until the server takes it over below
    port = hold.getsockname()[1]
    result: list = []
    attempts: list[float] = []

    def reader() -> None:
        with shoal.Client(f"127.0.0.1:{port}", timeout=5, retries=8, backoff=0.1) as c:
            real = c.collections.List

            def counted(*args, **kwargs):  # noqa: ANN002, ANN003
                attempts.append(time.monotonic())
                return real(*args, **kwargs)

            c.collections.List = counted
            result.append(c.list_collections())

    th = threading.Thread(target=reader)
    th.start()
    wait_for(lambda: len(attempts) >= 2, what="a refused attempt and its retry")
    hold.close()
    server = build_server(shoal.Database(), "127.0.0.1", port)
    try:
        th.join(20)
        assert result == [[]]
    finally:
        server.stop(grace=1)
    with shoal.Client(f"127.0.0.1:{port}", timeout=5, retries=1, backoff=0.01) as c:
        with pytest.raises(errors.UnavailableError):
            c.list_collections()


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    srv = start_server(tmp_path, "--data", str(data_dir))
    ids = [f"p{i}" for i in range(30)]
    x = np.random.default_rng(5).standard_normal((30, 4)).astype(np.float32)
    with shoal.Client(srv.target, timeout=20) as c:
        col = c.create_collection("durable", dim=4, metric="l2")
        col.upsert(ids, x, [{"i": i} for i in range(30)])
        col.delete(["p0"])
        want = col.search(x[:3], k=5)
    srv.stop(signal.SIGKILL)
    srv = start_server(tmp_path, "--data", str(data_dir))
    try:
        with shoal.Client(srv.target, timeout=20) as c:
            col = c.get_collection("durable")
            assert col.count() == 29
            got = col.get(ids[1:])
            np.testing.assert_array_equal(got.vectors, x[1:])
            assert [m["i"] for m in got.metadata] == list(range(1, 30))
            assert [r.ids for r in col.search(x[:3], k=5)] == [r.ids for r in want]
            # admin calls of the durable database
            col.delete(ids[1:11])
            c.flush()
            col.compact()  # True, or False when the background optimizer vacuumed the segment first
            assert col.count() == 19
            c.snapshot("snap")  # the default snapshot directory: DATA/snapshots
            assert c.stats()["collections"]["durable"]["count"] == 19
    finally:
        assert srv.stop() == 0
    snap = shoal.Database(str(data_dir / "snapshots" / "snap"))
    assert snap.get_collection("durable").count() == 19
    snap.close()


def test_tls_and_deadline(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    srv = start_server(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), "--api-key", "k")
    try:
        with shoal.Client(srv.target, api_key="k", root_certificates=cert.read_bytes(), timeout=20) as c:
            c.create_collection("tls", dim=2).upsert([1], [[1.0, 0.0]])
            assert c.get_collection("tls").search([1.0, 0.0], k=1).ids == [1]
        with shoal.Client(srv.target, api_key="k", timeout=5, retries=0) as plain:  # plaintext to a TLS port
            with pytest.raises(errors.UnavailableError):
                plain.list_collections()
        # A deadline already past when sent. (1e-9 s was not reliably: grpc rounds deadlines up to the
        # millisecond, and a connection shared from the client above answered within it ~9 times in 10.)
        with shoal.Client(srv.target, api_key="k", root_certificates=cert.read_bytes(), timeout=-1.0) as hasty:
            with pytest.raises(errors.DeadlineExceededError) as info:
                hasty.list_collections()
            assert info.value.grpc_code == "DEADLINE_EXCEEDED"
    finally:
        assert srv.stop() == 0


def test_status_without_a_shoal_trailer_maps_to_the_general_class() -> None:
    """A status grpc itself produced (no 'shoal-error' trailer) still becomes a precise ShoalError."""
    import grpc

    from shoal.rpc.status import error_from_rpc

    class Bare(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return ""

        def trailing_metadata(self) -> tuple:
            return ()

    for code, cls in [(grpc.StatusCode.CANCELLED, errors.CancelledError), (grpc.StatusCode.UNAVAILABLE, errors.UnavailableError),
                      (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceededError), (grpc.StatusCode.UNKNOWN, errors.ShoalError)]:
        exc = error_from_rpc(Bare(code))
        assert type(exc) is cls and exc.grpc_code == code.name and str(exc) == code.name
