"""The GPU kernels' logic on CPU: cupy replaced by a numpy stand-in (see fakecupy.py).

These run everywhere and check what does not need a device: selection and tie order,
chunking, list flattening, resident-copy refresh after appends, budget handling. The same
cases run on a real device in test_gpu.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import ResourceExhaustedError
from shoal.index.flat import FlatIndex
from shoal.index.ivf import IVFIndex
from tests.conftest import assert_knn_equal, brute_force
from tests.gpu import cases


@pytest.mark.parametrize("metric", cases.METRICS)
def test_flat_parity(fake_gpu, metric):
    cases.check_flat(metric)
    assert fake_gpu.uploaded_bytes > 0
    assert fake_gpu.report()["resident_bytes"] == 0  # device copies die with their index


def test_flat_uploads_once_then_only_appended_rows(fake_gpu):
    x, q = cases.data(2000, 16)
    idx = FlatIndex(16, backend="cupy")
    idx.add(x[:1000], np.arange(1000))
    idx.add(x[1000:1500], np.arange(1000, 1500))  # host buffer doubles to 2000 rows
    idx.search(q, 5)
    first = fake_gpu.uploaded_bytes
    idx.search(q, 5)
    assert fake_gpu.uploaded_bytes - first < x[:1000].nbytes // 10  # queries only, not the data
    idx.add(x[1500:], np.arange(1500, 2000))  # fits the host buffer: same array, appended rows
    before = fake_gpu.uploaded_bytes
    d, i = idx.search(q, 5)
    assert fake_gpu.uploaded_bytes - before < x[1500:].nbytes * 1.5  # the 500 new rows (+ norms, labels)
    assert_knn_equal(d, i, *brute_force(q, x, 5, "l2"), atol=1e-3)


def test_flat_streams_when_data_exceeds_budget(fake_gpu):
    x, q = cases.data(3000, 32)
    fake_gpu.budget = x.nbytes // 2  # data cannot be resident: chunks are streamed, results stay exact
    idx = FlatIndex(32, backend="cupy")
    idx.add(x, np.arange(3000))
    d, i = idx.search(q, 10)
    assert_knn_equal(d, i, *brute_force(q, x, 10, "l2"), atol=1e-3)
    assert fake_gpu.resident_bytes <= fake_gpu.budget


def test_tiny_budget_is_a_clear_error(fake_gpu):
    x, q = cases.data(2000, 32)
    fake_gpu.budget = 64  # less than one row of scratch
    idx = IVFIndex(32, nlist=8, backend="cupy")
    with pytest.raises(ResourceExhaustedError, match="SHOAL_GPU_MEMORY_BUDGET"):
        idx.train(x)
    flat = FlatIndex(32, backend="cupy")
    flat.add(x, np.arange(2000))
    with pytest.raises(ResourceExhaustedError, match="budget"):
        flat.search(q, 10)
    assert flat.ntotal == 2000  # state untouched


@pytest.mark.parametrize("codec,m", cases.IVF_CODECS)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivf_parity(fake_gpu, codec, m, metric, tmp_path):
    cases.check_ivf(codec, m, metric, tmp_path)


def test_ivf_cosine_pq(fake_gpu, tmp_path):
    cases.check_ivf("pq", 8, "cosine", tmp_path)


def test_pq_flat_parity(fake_gpu):
    cases.check_pq_flat("l2")


def test_kmeans_parity(fake_gpu):
    cases.check_kmeans()


def test_collection_parity(fake_gpu):
    cases.check_collection()
