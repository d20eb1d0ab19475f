"""Flat SQ8 / fp16 indices: recall with and without re-ranking, filters, persistence."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.index import SQIndex, load_index, make_index
from tests.conftest import assert_knn_equal, brute_force
from tests.quant.helpers import clustered, recall, true_ids

N, DIM, NQ, K = 3000, 16, 40, 10


@pytest.fixture(scope="module")
def data():
    x = clustered(N + NQ, DIM, seed=13)
    return x[:N], x[N:]


def _built(spec, metric, x, **options):
    index = make_index(spec, DIM, metric, **options)
    index.train(x)
    index.add(x, np.arange(x.shape[0]))
    return index


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_sq8_recall_and_rescoring(metric, data):
    x, q = data
    index = _built("SQ8", metric, x)
    assert index.code_size == DIM
    truth = true_ids(q, x, K, metric)
    raw = recall(index.search(q, K, params={"rescore": False})[1], truth)
    d, i = index.search(q, K)
    assert raw >= 0.85
    assert recall(i, truth) >= max(raw, 0.99)
    assert_knn_equal(d, i, *brute_force(q, x, K, metric), atol=1e-3)  # rescored = exact here


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_fp16_is_nearly_exact_without_rescoring(metric, data):
    x, q = data
    index = _built("SQfp16", metric, x, keep_vectors=False)
    assert index.code_size == 2 * DIM and index.min_train_size == 1
    _, i = index.search(q, K)
    assert recall(i, true_ids(q, x, K, metric)) >= 0.99


def test_filters_and_persistence(data, tmp_path):
    x, q = data
    index = _built("SQ8", "l2", x, trim=0.001)
    for fraction in (0.5, 0.02, 0.001):
        mask = np.random.default_rng(5).random(N) < fraction
        _, i = index.search(q, K, allowed=mask)
        assert ((i >= 0).sum(1) == min(K, int(mask.sum()))).all()
        assert mask[i[i >= 0]].all()
        assert recall(i, true_ids(q, x, K, "l2", mask)) >= 0.99
    index.remove(np.arange(100))
    index.save(tmp_path / "sq.shoal")
    loaded = load_index(tmp_path / "sq.shoal")
    assert isinstance(loaded, SQIndex) and loaded.sq.trim == 0.001 and len(loaded) == N - 100
    for p in ({}, {"rescore": False}):
        np.testing.assert_array_equal(index.search(q, K, params=p)[1], loaded.search(q, K, params=p)[1])
    lims, d, ids = loaded.range_search(q[:3], 5.0)
    ref = brute_force(q[:3], x[100:], N - 100, "l2", labels=np.arange(100, N))
    for row in range(3):
        assert lims[row + 1] - lims[row] == int((ref[0][row] < 5.0).sum())


def test_numpy_backend_matches_numba(data):
    x, q = data
    a = _built("SQ8", "cosine", x, backend="numba")
    b = _built("SQ8", "cosine", x, backend="numpy")
    for p in ({}, {"rescore": False}):
        da, ia = a.search(q, K, params=p)
        db, ib = b.search(q, K, params=p)
        np.testing.assert_allclose(da, db, rtol=1e-4, atol=1e-4)
        assert (ia == ib).mean() > 0.95
