"""A real ``shoal serve`` subprocess on an ephemeral 127.0.0.1 port, and clients for it."""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    log: Path
    snapshot_dir: Path | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()


def start_server(tmp: Path, *args: str) -> ServerProcess:
    """Run ``python -m shoal serve --port 0 ARGS`` and wait for the port it prints."""
    from shoal.rpc.cli import spawn

    log = tmp / f"server-{time.monotonic_ns()}.log"
    with open(log, "w") as err:
        proc, port = spawn(["--port", "0", *args], stderr=err)
    return ServerProcess(proc, port, log)


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 and its key, made with the openssl CLI (skips without it)."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found to make a self-signed certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An in-memory server shared by one test module (snapshots go to its own temp directory)."""
    tmp = tmp_path_factory.mktemp("rpc")
    srv = start_server(tmp, "--snapshot-dir", str(tmp / "snapshots"))
    srv.snapshot_dir = tmp / "snapshots"
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ServerProcess):
    import shoal

    with shoal.Client(server.target, timeout=20) as c:
        yield c
