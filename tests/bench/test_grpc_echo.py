"""The bare grpcio server that served_overhead measures Shoal's floor against (issue 27)."""
from __future__ import annotations

import sys

import grpc
import numpy as np
import pytest

from shoal.bench.grpc_echo import PATH
from shoal.bench.served_overhead import ServerCpu, one_per_request, start_echo


@pytest.mark.parametrize("flags", [[], ["--aio"], ["--generic", "--executor", "threadpool", "--work-us", "50"]])
def test_echo_server_answers_fixed_bytes_and_its_cpu_per_call_is_measured(tmp_path, flags) -> None:
    proc, target = start_echo(sys.executable, [*flags, "--response-bytes", "7"], str(tmp_path / "echo.log"))
    try:
        with grpc.insecure_channel(target) as channel:
            assert channel.unary_unary(PATH)(b"anything", timeout=20) == b"\0" * 7
        row = one_per_request(target, "", 0, {}, np.zeros((30, 4), np.float32), 2, ServerCpu(proc.pid), echo=True)
        assert row["clients"] == 2 and row["qps"] > 0 and row["server_cpu_us"] >= 0 and row["p99_ms"] >= row["p50_ms"]
    finally:
        proc.terminate()
        proc.wait(30)
