"""ShoalError <-> gRPC status: every class's code, the client's class for a bare status, the trailer,
DATA_LOSS / FAILED_PRECONDITION / the catch-all INTERNAL over a real connection, and status messages
that stay within what gRPC can carry (issue 15: Get(name="x"*100000) came back as
RESOURCE_EXHAUSTED about header size instead of NOT_FOUND)."""
from __future__ import annotations

import logging
from pathlib import Path

import grpc
import numpy as np
import pytest

import shoal
from shoal.engine import errors
from shoal.rpc import status
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


# ---------------------------------------------------------------- the mapping

#: Every ShoalError class and the status it must travel as: written out, so that a class whose
#: code changes (CorruptionError DATA_LOSS -> INTERNAL slipped through once) fails here.
EXPECTED_CODES = {
    "ShoalError": "INTERNAL", "InvalidArgumentError": "INVALID_ARGUMENT", "DimensionMismatchError": "INVALID_ARGUMENT",
    "InvalidVectorError": "INVALID_ARGUMENT", "DuplicateIdError": "INVALID_ARGUMENT", "FilterError": "INVALID_ARGUMENT",
    "InvalidSpecError": "INVALID_ARGUMENT", "NotFoundError": "NOT_FOUND", "CollectionNotFoundError": "NOT_FOUND",
    "IdNotFoundError": "NOT_FOUND", "PayloadIndexNotFoundError": "NOT_FOUND",
    "AlreadyExistsError": "ALREADY_EXISTS", "CollectionExistsError": "ALREADY_EXISTS",
    "FailedPreconditionError": "FAILED_PRECONDITION", "ClosedError": "FAILED_PRECONDITION",
    "NotTrainedError": "FAILED_PRECONDITION", "ReadOnlyError": "FAILED_PRECONDITION", "StorageError": "INTERNAL",
    "CorruptionError": "DATA_LOSS", "FormatVersionError": "FAILED_PRECONDITION", "LockedError": "FAILED_PRECONDITION",
    "ResourceExhaustedError": "RESOURCE_EXHAUSTED", "DiskFullError": "RESOURCE_EXHAUSTED",
    "AuthenticationError": "UNAUTHENTICATED", "UnavailableError": "UNAVAILABLE", "CancelledError": "CANCELLED",
    "DeadlineExceededError": "DEADLINE_EXCEEDED", "UnimplementedError": "UNIMPLEMENTED",
    "CollectionConfigMismatchError": "ALREADY_EXISTS", "ShardUnavailableError": "UNAVAILABLE",
}
#: The class a client raises for a bare status of each code (no shoal-error trailer).
GENERAL_CLASS = {"INTERNAL": "ShoalError", "INVALID_ARGUMENT": "InvalidArgumentError", "NOT_FOUND": "NotFoundError",
                 "ALREADY_EXISTS": "AlreadyExistsError", "FAILED_PRECONDITION": "FailedPreconditionError",
                 "DATA_LOSS": "CorruptionError", "RESOURCE_EXHAUSTED": "ResourceExhaustedError",
                 "UNAUTHENTICATED": "AuthenticationError", "UNAVAILABLE": "UnavailableError",
                 "CANCELLED": "CancelledError", "DEADLINE_EXCEEDED": "DeadlineExceededError",
                 "UNIMPLEMENTED": "UnimplementedError"}


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "", trailers: tuple = ()) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailers


class FakeContext:
    """What abort_with needs of a grpc.ServicerContext; abort raises like the real one."""

    def __init__(self, trailers: tuple = ()) -> None:
        self.trailers, self.aborted = trailers, None

    def trailing_metadata(self) -> tuple:
        return self.trailers

    def set_trailing_metadata(self, trailers: tuple) -> None:
        self.trailers = trailers

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


def test_every_error_class_has_its_documented_status() -> None:
    classes = status._shoal_classes()
    assert set(classes) == set(EXPECTED_CODES), "a new ShoalError class needs its status in EXPECTED_CODES"
    for name, cls in classes.items():
        exc = cls("why")
        assert status.status_code(exc) == getattr(grpc.StatusCode, EXPECTED_CODES[name]), name


def test_a_bare_status_becomes_the_most_general_class_of_its_code() -> None:
    assert {code: cls.__name__ for code, cls in status._BY_CODE.items()} == GENERAL_CLASS
    for code, name in GENERAL_CLASS.items():
        exc = status.error_from_rpc(FakeRpcError(getattr(grpc.StatusCode, code), "details"))
        assert type(exc).__name__ == name and exc.grpc_code == code and str(exc) == "details"
    odd = status.error_from_rpc(FakeRpcError(grpc.StatusCode.OUT_OF_RANGE, ""))
    assert type(odd) is errors.ShoalError and odd.grpc_code == "OUT_OF_RANGE" and str(odd) == "OUT_OF_RANGE"


def test_the_trailer_names_the_class_the_client_raises() -> None:
    for name, code in EXPECTED_CODES.items():
        trailers = (("other", "x"), (status.ERROR_TRAILER, name))
        exc = status.error_from_rpc(FakeRpcError(getattr(grpc.StatusCode, code), "msg", trailers))
        assert type(exc).__name__ == name and exc.grpc_code == code and str(exc) == "msg"
    # an unknown class name (a newer server) falls back to the class of the code
    exc = status.error_from_rpc(FakeRpcError(grpc.StatusCode.NOT_FOUND, "m", ((status.ERROR_TRAILER, "Nope"),)))
    assert type(exc) is errors.NotFoundError
    # what the wire says wins over the class's own code
    exc = status.error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "m", ((status.ERROR_TRAILER, "FilterError"),)))
    assert type(exc) is errors.FilterError and exc.grpc_code == "UNAVAILABLE"
    # a non-grpc exception passed by mistake still becomes a ShoalError
    exc = status.error_from_rpc(grpc.RpcError("plain"))
    assert type(exc) is errors.ShoalError and exc.grpc_code == "UNKNOWN"


def test_abort_with_sends_code_clipped_details_and_keeps_earlier_trailers() -> None:
    ctx = FakeContext((("request-id", "r1"),))
    with pytest.raises(RuntimeError, match="aborted"):
        status.abort_with(ctx, errors.CorruptionError("x" * (MAX_DETAILS * 3)))
    code, details = ctx.aborted
    assert code == grpc.StatusCode.DATA_LOSS and len(details) <= MAX_DETAILS + 40 and details.startswith("xxx")
    assert "6000 chars" in details
    assert ctx.trailers == (("request-id", "r1"), (status.ERROR_TRAILER, "CorruptionError"))
    ctx = FakeContext(None)
    with pytest.raises(RuntimeError):
        status.abort_with(ctx, errors.ReadOnlyError("short"))
    assert ctx.aborted == (grpc.StatusCode.FAILED_PRECONDITION, "short")
    assert ctx.trailers == ((status.ERROR_TRAILER, "ReadOnlyError"),)


# ----------------------------------------------------------- over the wire

def _corrupt_collection(path: Path) -> None:
    with shoal.Database(path, flush_rows=50) as db:
        col = db.create_collection("bad", dim=4, optimizer={"background": False})
        col.upsert(list(range(60)), np.random.default_rng(0).standard_normal((60, 4)))
        db.create_collection("good", dim=4).upsert([1], [[1.0, 0.0, 0.0, 0.0]])
    seg = sorted((path / "collections" / "bad").glob("seg-*"))[0]
    data = bytearray((seg / "rows.bin").read_bytes())
    data[-3] ^= 0x10
    (seg / "rows.bin").write_bytes(data)


def test_data_loss_and_failed_precondition_reach_the_client(tmp_path: Path) -> None:
    _corrupt_collection(tmp_path / "db")
    server = build_server(shoal.Database(tmp_path / "db"), "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
            with pytest.raises(errors.CorruptionError, match="rows.bin") as info:
                c.get_collection("bad")
            assert info.value.grpc_code == "DATA_LOSS"
            assert c.get_collection("good").count() == 1  # the others serve normally
    finally:
        server.stop(grace=1)
    server = build_server(shoal.Database(tmp_path / "db", read_only=True), "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
            good = c.get_collection("good")
            with pytest.raises(errors.ReadOnlyError) as info:
                good.upsert([2], [[0.0, 1.0, 0.0, 0.0]])
            assert info.value.grpc_code == "FAILED_PRECONDITION" and good.count() == 1
    finally:
        server.stop(grace=1)


def test_an_unexpected_exception_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(shoal.Database):
        def list_collections(self) -> list[str]:
            raise RuntimeError("a bug, with a secret path /etc/x")

    server = build_server(Broken(), "127.0.0.1", 0)
    try:
        with caplog.at_level(logging.ERROR, logger="shoal"), shoal.Client(f"127.0.0.1:{server.port}", timeout=10,
                                                                         retries=0) as c:
            with pytest.raises(errors.ShoalError) as info:
                c.list_collections()
            assert type(info.value) is errors.ShoalError and info.value.grpc_code == "INTERNAL"
            assert "internal error in List; see server log" in str(info.value) and "/etc/x" not in str(info.value)
            c.create_collection("ok", dim=2)  # the server goes on serving
            assert c.get_collection("ok").dim == 2
        assert any("unhandled error" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        server.stop(grace=1)
