"""A client in another language (Node, @grpc/grpc-js) talks to the server without our Python stubs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

import shoal
from shoal.rpc.v1 import service_pb2

NODE_DIR = Path(os.environ.get("SHOAL_NODE_DIR", Path.home() / ".cache" / "shoal-rpc-node"))
SCRIPT = Path(__file__).with_name("health_client.js")


def node_modules() -> Path | None:
    """@grpc/grpc-js and @grpc/proto-loader, installed once into NODE_DIR (None when impossible)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    if not (NODE_DIR / "node_modules" / "@grpc" / "proto-loader").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(NODE_DIR),
                            "@grpc/grpc-js@1", "@grpc/proto-loader@0.7"], check=True, timeout=180,
                           capture_output=True)
        except (subprocess.SubprocessError, OSError):
            return None
    return NODE_DIR / "node_modules"


def descriptor_set(path: Path) -> None:
    """The FileDescriptorSet of health + shoal.v1 (what reflection serves), dependencies first."""
    out, seen = descriptor_pb2.FileDescriptorSet(), set()

    def add(fd) -> None:
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            add(dep)
        seen.add(fd.name)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        out.file.append(proto)

    add(health_pb2.DESCRIPTOR)
    add(service_pb2.DESCRIPTOR)
    path.write_bytes(out.SerializeToString())


def test_node_grpc_js_client(server, tmp_path: Path) -> None:
    modules = node_modules()
    if modules is None:
        pytest.skip("node/npm missing or `npm install @grpc/grpc-js @grpc/proto-loader` impossible (offline?)")
    with shoal.Client(server.target, timeout=20) as c:
        col = c.create_collection("node", dim=2, metric="l2")
        col.upsert(["a", 7, "c"], np.array([[1, 0], [0, 1], [0.9, 0.1]], np.float32),
                   [{"n": 2 ** 40}, {"n": 2}, {"n": 3}])
    descriptor_set(tmp_path / "descriptors.bin")
    proc = subprocess.run(["node", str(SCRIPT), server.target, str(tmp_path / "descriptors.bin")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "NODE_PATH": str(modules)})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["health"] == "SERVING" and "node" in got["names"]
    assert got["ids"] == ["a", "c"] and got["meta"] == [2 ** 40, 3]
    assert got["badCode"] == 3 and "dimension 3, expected 2" in got["badDetails"]  # INVALID_ARGUMENT
