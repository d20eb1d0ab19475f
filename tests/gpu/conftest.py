"""Fixtures of the GPU tests: a CPU stand-in for cupy, and the real-device guard."""
from __future__ import annotations

import pytest

from tests.gpu import fakecupy


@pytest.fixture
def fake_gpu(monkeypatch):
    """Kernels of backend 'cupy' running on numpy, with a 64 MiB budget; yields the DeviceMemory."""
    mem = fakecupy.install(monkeypatch, 64 << 20)
    yield mem
    fakecupy.uninstall()


@pytest.fixture
def real_gpu():
    """The process DeviceMemory on a real device (skips with a reason when there is none)."""
    from shoal.engine.backend import gpu_available

    if not gpu_available():
        pytest.skip("no usable CUDA device / cupy here (see the 'shoal.backend' log line); runs on a GPU machine")
    from shoal.engine.device import device_memory

    mem = device_memory()
    mem.clear()
    yield mem
    mem.clear()
