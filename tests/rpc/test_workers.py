"""``shoal serve --workers N`` with real processes: reads on every process, writes forwarded to the owner,
acknowledged writes visible to the next read anywhere, statuses kept, kill -9 of a reader or the owner."""
from __future__ import annotations

import os
import signal
import time

import grpc
import numpy as np
import pytest

import shoal
from shoal.bench.served_overhead import process_tree
from shoal.engine import errors
from shoal.rpc.status import ERROR_TRAILER
from shoal.rpc.v1 import points_pb2, service_pb2_grpc, types_pb2

from .conftest import start_server

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process trees from /proc")


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def readers(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid]


def fresh_client(target: str) -> shoal.Client:
    """A new channel, so a new connection the kernel may hand to any of the processes."""
    return shoal.Client(target, timeout=20, retries=8, backoff=0.05)


def test_reads_anywhere_see_acknowledged_writes(tmp_path) -> None:
    srv = start_server(tmp_path, "--data", str(tmp_path / "db"), "--workers", "3")
    try:
        wait_for(lambda: len(readers(srv.proc.pid)) == 2, "two reader processes")
        with fresh_client(srv.target) as c:
            c.create_collection("w", dim=4, metric="l2")
        x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
        for i in range(20):  # each write through one connection, each read through a new one
            with fresh_client(srv.target) as writer:
                assert writer.get_collection("w").upsert([i], x[i:i + 1], [{"i": i}]) == 1
            with fresh_client(srv.target) as reader:
                col = reader.get_collection("w")
                assert col.count() == i + 1
                assert col.search(x[i], k=1).ids == [i] and col.get([i]).metadata == [{"i": i}]
        with fresh_client(srv.target) as c:
            c.get_collection("w").upsert(list(range(100, 5100)), np.resize(x, (5000, 4)),
                                         [{"g": j % 7} for j in range(5000)])  # streamed, forwarded
            c.get_collection("w").delete([0, 1])
            c.flush()  # a seal: the readers reopen from the new manifest
        for _ in range(6):
            with fresh_client(srv.target) as c:
                col = c.get_collection("w")
                assert col.count() == 5018 and col.count({"g": 3}) == 714 and not any(col.exists([0, 1]))
    finally:
        assert srv.stop() == 0


def test_readers_answer_reads_themselves(tmp_path) -> None:
    """With the owner stopped (SIGSTOP), searches still get answers: from the readers, out of the files."""
    srv = start_server(tmp_path, "--data", str(tmp_path / "db"), "--workers", "3")
    try:
        wait_for(lambda: len(readers(srv.proc.pid)) == 2, "two reader processes")
        with fresh_client(srv.target) as c:
            c.create_collection("p", dim=4).upsert([7], np.ones((1, 4)))
        os.kill(srv.proc.pid, signal.SIGSTOP)
        answered, deadline = 0, time.monotonic() + 90
        try:
            # new connections: the kernel gives each to one of the three processes; a reader's first
            # answer opens the collection, which can take seconds on a loaded machine
            while not answered and time.monotonic() < deadline:
                channel = grpc.insecure_channel(srv.target)
                try:
                    count = service_pb2_grpc.PointsStub(channel).Count(points_pb2.CountRequest(collection="p"),
                                                                        timeout=3)
                    answered += count.count == 1
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # landed on the stopped owner
                channel.close()
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        assert answered > 0
    finally:
        srv.stop()


def test_statuses_through_readers(tmp_path) -> None:
    """Errors of forwarded and of locally served calls keep their status and class (never INTERNAL)."""
    srv = start_server(tmp_path, "--data", str(tmp_path / "db"), "--workers", "3")
    try:
        wait_for(lambda: len(readers(srv.proc.pid)) == 2, "two reader processes")
        with fresh_client(srv.target) as c:
            c.create_collection("s", dim=3)
        for _ in range(6):
            channel = grpc.insecure_channel(srv.target)
            points = service_pb2_grpc.PointsStub(channel)
            bad = points_pb2.UpsertRequest(collection="s", ids=[types_pb2.PointId(num=1)],
                                           vectors=types_pb2.Vectors(dim=2, packed=np.ones(2, "<f4").tobytes()))
            with pytest.raises(grpc.RpcError) as info:
                points.Upsert(bad, timeout=20)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert dict(info.value.trailing_metadata())[ERROR_TRAILER] == "DimensionMismatchError"
            with pytest.raises(grpc.RpcError) as info:
                points.Count(points_pb2.CountRequest(collection="nope"), timeout=20)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary("/shoal.v1.Points/Upsert")(b"\xff\xff\xff", timeout=20)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            channel.close()
            with fresh_client(srv.target) as c:
                with pytest.raises(errors.CollectionExistsError):
                    c.create_collection("s", dim=3)
                with pytest.raises(errors.CollectionNotFoundError):
                    c.get_collection("nope")
    finally:
        srv.stop()


def test_kill_9_of_a_reader_and_of_the_owner_lose_no_acknowledged_write(tmp_path) -> None:
    data = str(tmp_path / "db")
    srv = start_server(tmp_path, "--data", data, "--workers", "3")
    acked = 0
    try:
        first = wait_for(lambda: (r := readers(srv.proc.pid)) and len(r) == 2 and r, "two reader processes")
        with fresh_client(srv.target) as c:
            col = c.create_collection("k", dim=2)
            for i in range(30):
                col.upsert([i], np.ones((1, 2)) * (i + 1))
                acked += 1
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: (r := readers(srv.proc.pid)) and len(r) == 2 and first[0] not in r, "a new reader")
        for i in range(30, 60):  # clients reconnect (a killed reader's connections fail over to the others)
            with fresh_client(srv.target) as c:
                col = c.get_collection("k")
                col.upsert([i], np.ones((1, 2)) * (i + 1))
                acked += 1
                assert col.count() == acked
        survivors = readers(srv.proc.pid)
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(30)
        wait_for(lambda: all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in survivors),
                 "readers to exit after the owner")
    finally:
        if srv.proc.poll() is None:
            srv.stop()
    again = start_server(tmp_path, "--data", data, "--workers", "2")
    try:
        for _ in range(4):
            with fresh_client(again.target) as c:
                assert c.get_collection("k").count() == acked == 60
    finally:
        assert again.stop() == 0


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_workers_need_a_data_directory(tmp_path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "shoal", "serve", "--port", "0", "--workers", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--workers" in out.stderr
