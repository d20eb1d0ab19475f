"""Backend selection without a usable GPU: no crash, no hang, one log line, CPU fallback."""
from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

from shoal.engine import backend
from shoal.engine.errors import InvalidArgumentError
from shoal.index.flat import FlatIndex


class CUDARuntimeError(RuntimeError):
    """Shaped like cupy_backends.cuda.api.runtime.CUDARuntimeError."""


def _fake_cupy(device_count=None, raise_on_count=None, raise_on_alloc=None) -> types.ModuleType:
    cp = types.ModuleType("cupy")
    cp.__version__ = "13.0.0-fake"

    def get_device_count():
        if raise_on_count:
            raise raise_on_count
        return device_count

    def arange(*a, **kw):
        if raise_on_alloc:
            raise raise_on_alloc
        return np.arange(*a, **kw)

    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    cp.arange = arange
    cp.float32 = np.float32
    return cp


@pytest.fixture
def no_gpu(monkeypatch):
    """Factory: install a cupy module (or None = not importable) and clear the cached detection."""
    def install(module):
        monkeypatch.setitem(sys.modules, "cupy", module)
        monkeypatch.delenv("SHOAL_BACKEND", raising=False)
        backend.gpu_available.cache_clear()
    yield install
    backend.gpu_available.cache_clear()


CASES = {
    "not installed": (None, logging.INFO, "not installed"),
    "no driver": (_fake_cupy(raise_on_count=CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version "
                                                             "is insufficient")), logging.WARNING, "InsufficientDriver"),
    "no device": (_fake_cupy(device_count=0), logging.WARNING, "no CUDA device"),
    "oom at start-up": (_fake_cupy(device_count=1, raise_on_alloc=MemoryError("out of memory to allocate 512 bytes")),
                        logging.WARNING, "out of memory"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_auto_falls_back_with_one_log_line(no_gpu, caplog, case):
    module, level, text = CASES[case]
    no_gpu(module)
    with caplog.at_level(logging.INFO, logger="shoal.backend"):
        assert backend.get_backend("auto").name == "numba"
        assert backend.get_backend(None).name == "numba"
        assert backend.gpu_available() is False
    lines = [r for r in caplog.records if r.name == "shoal.backend"]
    assert len(lines) == 1 and lines[0].levelno == level and text in lines[0].getMessage()
    assert "using the CPU backend" in lines[0].getMessage()


def test_explicit_cupy_without_gpu_is_a_clear_error(no_gpu, monkeypatch):
    no_gpu(_fake_cupy(device_count=0))
    with pytest.raises(InvalidArgumentError, match="no usable GPU.*'auto'"):
        FlatIndex(8, backend="cupy")
    monkeypatch.setenv("SHOAL_BACKEND", "cupy")
    with pytest.raises(InvalidArgumentError, match="no usable GPU"):
        FlatIndex(8)
    monkeypatch.setenv("SHOAL_BACKEND", "auto")
    assert FlatIndex(8).backend.name == "numba"


def test_env_selects_cpu_backends(monkeypatch):
    monkeypatch.setenv("SHOAL_BACKEND", "numpy")
    assert FlatIndex(4).backend.name == "numpy"
    monkeypatch.setenv("SHOAL_BACKEND", "gpu-please")
    with pytest.raises(InvalidArgumentError, match="unknown backend"):
        FlatIndex(4)


def test_cupy_kernels_fall_back_per_family(monkeypatch):
    """A family without a cupy module gets its numba kernels (e.g. HNSW graph search)."""
    mod = backend.load_kernels("shoal.index.kernels", "hnsw", backend.Backend("cupy"))
    assert mod.__name__ == "shoal.index.kernels.hnsw_numba"
