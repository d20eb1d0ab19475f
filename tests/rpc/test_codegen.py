"""The committed stubs are exactly what ``python -m shoal.rpc.codegen`` generates from the protos."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoal.rpc import codegen

pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the stubs")


def test_regenerating_stubs_gives_no_diff(tmp_path: Path) -> None:
    generated = codegen.generate(tmp_path)
    assert {p.name for p in generated} >= {f"{p.stem}_pb2.py" for p in codegen.proto_files()}
    stale = [p.name for p in generated if (codegen.PROTO_DIR / p.name).read_bytes() != p.read_bytes()]
    assert not stale, f"stubs out of date, run `python -m shoal.rpc.codegen`: {stale}"
    committed = {p.name for p in codegen.PROTO_DIR.iterdir() if p.name.endswith(("_pb2.py", "_pb2_grpc.py", "_pb2.pyi"))}
    assert committed == {p.name for p in generated}, "stub files without a proto (or missing ones)"


def test_stubs_import_as_shoal_rpc_v1() -> None:
    from shoal.rpc.v1 import service_pb2

    assert service_pb2.DESCRIPTOR.package == "shoal.v1"
    assert set(service_pb2.DESCRIPTOR.services_by_name) == {"Collections", "Points", "Search", "Admin"}
    for path in codegen.PROTO_DIR.glob("*_pb2*.py"):
        for line in path.read_text().splitlines():
            if line.startswith("from shoal") or (line.startswith("import ") and "_pb2" in line):
                assert line.startswith("from shoal.rpc.v1 import"), f"{path.name}: {line}"


def test_client_is_exported_lazily() -> None:
    """``import shoal`` stays free of grpc; ``shoal.Client`` loads it on first use."""
    code = ("import sys, shoal; assert 'grpc' not in sys.modules, 'grpc imported eagerly'; "
            "from shoal.rpc.client import Client; assert shoal.Client is Client and 'grpc' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
