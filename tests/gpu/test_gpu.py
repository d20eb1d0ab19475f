"""The same parity cases on a real CUDA device, plus what only a device can show.

Skipped with a reason on machines without a usable GPU (``real_gpu`` fixture); run them
with ``pytest -m gpu tests/gpu`` or ``bench/gpu_check.sh`` on a GPU machine.
"""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import ResourceExhaustedError
from shoal.index.flat import FlatIndex
from tests.conftest import assert_knn_equal
from tests.gpu import cases

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("metric", cases.METRICS)
def test_flat_parity(real_gpu, metric):
    cases.check_flat(metric)


def test_flat_parity_large(real_gpu):
    """Several data chunks and query blocks per call (the budget forces small chunks)."""
    from shoal.engine.device import set_memory_budget

    x, q = cases.data(200_000, 64, nq=3000)
    cpu = FlatIndex(64, backend="numba")
    cpu.add(x, np.arange(x.shape[0]))
    gpu = FlatIndex(64, backend="cupy")
    gpu.add(x, np.arange(x.shape[0]))
    set_memory_budget("256M")
    try:
        assert_knn_equal(*gpu.search(q, 20), *cpu.search(q, 20), atol=1e-2)
    finally:
        set_memory_budget("80%")


@pytest.mark.parametrize("codec,m", cases.IVF_CODECS)
@pytest.mark.parametrize("metric", cases.METRICS)
def test_ivf_parity(real_gpu, codec, m, metric, tmp_path):
    cases.check_ivf(codec, m, metric, tmp_path)


@pytest.mark.parametrize("metric", cases.METRICS)
def test_pq_flat_parity(real_gpu, metric):
    cases.check_pq_flat(metric)


def test_kmeans_parity(real_gpu):
    cases.check_kmeans()


def test_collection_parity(real_gpu):
    cases.check_collection()


def test_flat_saved_on_gpu_loads_on_cpu(real_gpu, tmp_path):
    x, q = cases.data(5000, 32)
    gpu = FlatIndex(32, backend="cupy")
    gpu.add(x, np.arange(5000))
    gpu.save(tmp_path / "f.shoal")
    cpu = FlatIndex.load(tmp_path / "f.shoal", backend="numba")
    assert_knn_equal(*gpu.search(q, 10), *cpu.search(q, 10), atol=1e-3)


def test_real_allocation_failure_is_resource_exhausted(real_gpu):
    """The pool limit set from the budget turns a real over-budget allocation into ResourceExhaustedError."""
    import cupy

    from shoal.engine.device import set_memory_budget

    set_memory_budget("128M")
    try:
        with pytest.raises(ResourceExhaustedError, match="ran out of memory"):
            with real_gpu.guard():
                cupy.empty(256 << 20, cupy.uint8)
        x, q = cases.data(400_000, 128, nq=64)  # 205 MB of vectors > budget: streamed, still exact
        idx = FlatIndex(128, backend="cupy")
        idx.add(x, np.arange(x.shape[0]))
        d, i = idx.search(q, 10)
        assert (i >= 0).all() and real_gpu.resident_bytes <= real_gpu.budget
    finally:
        set_memory_budget("80%")
    assert real_gpu.report()["budget"] > 64 << 20
