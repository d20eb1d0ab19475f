"""Index.search with a k far beyond the stored rows: padded results at the cost of n, not of k (issue 15)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from shoal.index import make_index
from tests.conftest import brute_force

SPECS = ["Flat", "HNSW16", "IVF4,Flat", "IVF4,SQ8", "KDTree", "SQ8", "PQ4"]


@pytest.mark.parametrize("spec", SPECS)
def test_k_beyond_n_is_padded_and_exact_for_exact_families(spec: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    index = make_index(spec, 8, "l2")
    index.train(np.concatenate([x] * 11))  # PQ trains on >= 4096 rows
    index.add(x, np.arange(400))
    index.search(x[:3], 10)  # compiles (or loads) the kernels outside the timed call
    start = time.perf_counter()
    d, ids = index.search(x[:3], 16384)
    assert time.perf_counter() - start < 5.0  # was O(k) per candidate: k = 2**26 ran past 10 s
    assert d.shape == ids.shape == (3, 16384)
    assert (ids[:, :400] >= 0).all() and (ids[:, 400:] == -1).all() and np.isinf(d[:, 400:]).all()
    assert all(np.unique(row[:400]).size == 400 for row in ids)  # every row once
    assert (np.diff(d[:, :400], axis=1) >= 0).all()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_large_k_matches_brute_force_with_ties(backend: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (5000, 4)).astype(np.float32)  # many exact ties
    q = rng.integers(0, 3, (4, 4)).astype(np.float32)
    index = make_index("Flat", 4, "l2", backend=backend)
    index.add(x, np.arange(5000))
    d, ids = index.search(q, 3000)
    ref_d, ref_i = brute_force(q, x, 3000, "l2")
    np.testing.assert_allclose(d, ref_d, atol=1e-5)
    np.testing.assert_array_equal(ids, ref_i)  # ties by lower id, exactly as the sorted insert did


def test_params_must_be_a_mapping() -> None:
    from shoal.engine.errors import InvalidArgumentError

    index = make_index("Flat", 2, "l2")
    index.add(np.ones((1, 2)), [0])
    with pytest.raises(InvalidArgumentError, match="params must be a dict"):
        index.search(np.ones(2), 1, params=5)
