"""Flat PQ index: recall with and without re-ranking, filters, persistence, removal."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import InvalidArgumentError, NotTrainedError
from shoal.index import PQIndex, load_index, make_index
from tests.quant.helpers import clustered, recall, true_ids

N, DIM, NQ, K = 3000, 16, 40, 10


@pytest.fixture(scope="module")
def data():
    x = clustered(N + NQ, DIM, seed=11)
    return x[:N], x[N:]


@pytest.fixture(scope="module")
def built(data):
    x, _ = data
    out = {}
    for metric in ("l2", "cosine", "ip"):
        index = make_index("PQ8", DIM, metric)
        index.train(x)
        index.add(x, np.arange(N))
        out[metric] = index
    return out


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_recall_floors_and_rescoring(metric, data, built):
    """PQ8 (8 B/vector for 64 B floats): ≥0.45 raw, ≥0.9 rescored with oversample 4, ≥0.97 with 10."""
    x, q = data
    index = built[metric]
    truth = true_ids(q, x, K, metric)
    raw = recall(index.search(q, K, params={"rescore": False})[1], truth)
    r4 = recall(index.search(q, K)[1], truth)
    r10 = recall(index.search(q, K, params={"oversample": 10})[1], truth)
    assert raw >= 0.45 and r4 >= 0.9 and r10 >= 0.97
    assert raw < r4 <= r10


def test_filtered_search(data, built):
    x, q = data
    index = built["l2"]
    for fraction in (0.3, 0.01, 0.001):
        mask = np.random.default_rng(3).random(N) < fraction
        _, i = index.search(q, K, allowed=mask)
        assert ((i >= 0).sum(1) == min(K, int(mask.sum()))).all()
        assert mask[i[i >= 0]].all()
        assert recall(i, true_ids(q, x, K, "l2", mask)) >= 0.9


def test_save_load_remove(data, built, tmp_path):
    x, q = data
    index = built["ip"]
    index.save(tmp_path / "pq.shoal")
    loaded = load_index(tmp_path / "pq.shoal")
    assert isinstance(loaded, PQIndex) and loaded.code_size == 8
    for p in ({}, {"rescore": False}):
        d0, i0 = index.search(q, K, params=p)
        d1, i1 = loaded.search(q, K, params=p)
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_allclose(d0, d1, rtol=1e-6)
    loaded.remove(np.arange(0, N, 3))
    _, i = loaded.search(q, K)
    assert not np.isin(i, np.arange(0, N, 3)).any()
    assert loaded.nbytes > N * 8  # codes, ids and the rescoring copy


def test_untrained_and_errors(data):
    x, q = data
    index = PQIndex(DIM, "l2", m=4)
    assert index.min_train_size == 4096
    with pytest.raises(NotTrainedError):
        index.add(x[:2], [0, 1])
    with pytest.raises(InvalidArgumentError, match="divisor"):
        PQIndex(DIM, "l2", m=5)
    index.train(x)
    index.add(x, np.arange(N))
    with pytest.raises(InvalidArgumentError, match="oversample"):
        index.search(q, K, params={"oversample": 0})
    with pytest.raises(InvalidArgumentError, match="rescore"):
        index.search(q, K, params={"rescore": "yes"})


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_numpy_backend_matches_numba(metric, data):
    x, q = data
    a = PQIndex(DIM, metric, m=4, backend="numba")
    b = PQIndex(DIM, metric, m=4, backend="numpy")
    for index in (a, b):
        index.train(x[:1000])
        index.add(x[:1000], np.arange(1000))
    da, ia = a.search(q, K, params={"rescore": False})
    db, ib = b.search(q, K, params={"rescore": False})
    np.testing.assert_allclose(da, db, rtol=1e-3, atol=1e-3)
    assert (ia == ib).mean() > 0.95
