"""Issue 15's security findings over gRPC: snapshot containment, API key sources and scheme, reflection v1.

In-process servers (``build_server``) except where the command line itself is under
test (key file, environment variable), which run ``shoal serve``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

import shoal
from shoal.engine import errors
from shoal.rpc.cli import API_KEY_ENV
from shoal.rpc.server import REFLECTION_V1, ShoalServer, build_server
from tests.rpc.conftest import start_server

KEY = "s3cret-key"


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[tuple[ShoalServer, Path]]:
    """A server over a durable database in tmp_path/data (default snapshot directory data/snapshots)."""
    db = shoal.Database(tmp_path / "data")
    db.create_collection("c", dim=2).upsert([1, 2], [[1.0, 0.0], [0.0, 1.0]])
    server = build_server(db, "127.0.0.1", 0)
    yield server, tmp_path
    server.stop(grace=1)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


BAD_NAMES = ["../x", "../../../x", "data/../../x", "a/b", "/tmp/shoal-abs-snapshot", str(Path.cwd() / "x"),
             "x\x00y", "\x00", "x" * 5000, "/dev/null/x", "/proc/self/x", "/sys/x", ".", "..", ".hidden",
             "", " ", "a\\b", "snap\n", "é"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:30] for n in BAD_NAMES])
def test_snapshot_names_that_are_not_plain_names_are_refused(durable, name: str) -> None:
    server, root = durable
    before = _tree(root)
    with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
        with pytest.raises(errors.InvalidArgumentError, match="snapshot name") as info:
            c.snapshot(name)
        assert info.value.grpc_code == "INVALID_ARGUMENT" and len(str(info.value)) < 500
        with pytest.raises(errors.InvalidArgumentError, match="snapshot name"):
            c.get_collection("c").snapshot(name)
    assert _tree(root) == before  # nothing written anywhere
    assert not Path("/tmp/shoal-abs-snapshot").exists()


def test_snapshot_goes_inside_the_snapshot_directory(durable) -> None:
    server, root = durable
    with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
        c.snapshot("nightly-2026.12.01_a")
        c.get_collection("c").snapshot("just-c")
        with pytest.raises(errors.AlreadyExistsError):
            c.snapshot("nightly-2026.12.01_a")
    with shoal.Database(root / "data" / "snapshots" / "nightly-2026.12.01_a") as snap:
        assert snap.get_collection("c").count() == 2
    assert (root / "data" / "snapshots" / "just-c").is_dir()


def test_snapshot_never_follows_a_planted_link(durable, tmp_path: Path) -> None:
    server, root = durable
    outside = tmp_path / "outside"
    (root / "data" / "snapshots").mkdir()
    (root / "data" / "snapshots" / "evil").symlink_to(outside)
    with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
        with pytest.raises(errors.AlreadyExistsError):
            c.snapshot("evil")
    assert not outside.exists()


def test_in_memory_server_without_snapshot_dir_refuses_snapshots() -> None:
    server = build_server(shoal.Database(), "127.0.0.1", 0)
    try:
        with shoal.Client(f"127.0.0.1:{server.port}", timeout=10) as c:
            with pytest.raises(errors.FailedPreconditionError, match="--snapshot-dir"):
                c.snapshot("s")
    finally:
        server.stop(grace=1)


# ---------------------------------------------------------------------------------- auth

@pytest.mark.parametrize("metadata, ok", [
    ((("authorization", f"Bearer {KEY}"),), True),
    ((("authorization", f"bearer {KEY}"),), True),
    ((("authorization", f"bEaReR {KEY}"),), True),
    ((("authorization", f"BEARER   {KEY} "),), True),
    ((("x-api-key", KEY),), True),
    ((("authorization", f"Basic {KEY}"),), False),
    ((("authorization", f"Bearer{KEY}"),), False),
    ((("authorization", "Bearer"),), False),
    ((("authorization", "Bearer wrong"),), False),
    ((), False),
])
def test_bearer_scheme_is_case_insensitive(metadata, ok: bool) -> None:
    server = build_server(shoal.Database(), "127.0.0.1", 0, api_key=KEY)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/shoal.v1.Collections/List", request_serializer=None,
                                       response_deserializer=None)
            if ok:
                assert call(b"", metadata=metadata, timeout=10) == b""
            else:
                with pytest.raises(grpc.RpcError) as info:
                    call(b"", metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(grace=1)


@pytest.mark.parametrize("source", ["file", "env"])
def test_api_key_from_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    args: list[str] = []
    if source == "file":
        (tmp_path / "key").write_text(f"  {KEY}\n")
        args = ["--api-key-file", str(tmp_path / "key")]
    else:
        monkeypatch.setenv(API_KEY_ENV, KEY)  # spawn passes the environment on
    srv = start_server(tmp_path, *args)
    try:
        with shoal.Client(srv.target, timeout=20) as c:
            with pytest.raises(errors.AuthenticationError):
                c.list_collections()
        with shoal.Client(srv.target, api_key=KEY, timeout=20) as c:
            assert c.list_collections() == []
        assert KEY not in " ".join(srv.proc.args)  # the key never was on the command line
    finally:
        assert srv.stop() == 0


def test_help_warns_about_keys_on_the_command_line(capsys: pytest.CaptureFixture) -> None:
    from shoal.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "/proc/<pid>/cmdline" in text and API_KEY_ENV in text and "--api-key-file" in text


def test_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    from shoal.cli import main

    assert main(["serve", "--api-key-file", str(tmp_path / "missing")]) == 1


# ---------------------------------------------------------------------------- reflection

@pytest.mark.parametrize("service", ["grpc.reflection.v1alpha.ServerReflection", REFLECTION_V1])
def test_reflection_served_as_v1_and_v1alpha(service: str) -> None:
    server = build_server(shoal.Database(), "127.0.0.1", 0, api_key=KEY)  # reflection stays open
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            info = channel.stream_stream(f"/{service}/ServerReflectionInfo",
                                         request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                         response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
            requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol="shoal.v1.Admin")]
            listed, described = list(info(iter(requests), timeout=10))
        names = {s.name for s in listed.list_services_response.service}
        assert {"shoal.v1.Admin", "shoal.v1.Points", REFLECTION_V1, "grpc.reflection.v1alpha.ServerReflection"} <= names
        assert described.file_descriptor_response.file_descriptor_proto
    finally:
        server.stop(grace=1)

