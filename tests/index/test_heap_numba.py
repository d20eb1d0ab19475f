"""The heap top-k of the Numba kernels (index/kernels/heap_numba.py) against a sort, ties included."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.index.kernels.heap_numba import heap_push, heap_sort


@pytest.mark.parametrize("k", [1, 2, 7, 64, 1000])
def test_push_then_sort_equals_lexsort(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 3 * k + 5
    d = rng.integers(0, 5, n).astype(np.float32)  # many ties: order must fall back to the id
    ids = rng.permutation(n).astype(np.int64)
    heap_d = np.full(k, np.inf, np.float32)
    heap_i = np.full(k, -1, np.int64)
    for dist, i in zip(d, ids):
        heap_push(heap_d, heap_i, dist, i)
    heap_sort(heap_d, heap_i)
    order = np.lexsort((ids, d))[:k]
    np.testing.assert_array_equal(heap_d, d[order])
    np.testing.assert_array_equal(heap_i, ids[order])


def test_fewer_candidates_than_slots_keeps_padding_last() -> None:
    heap_d = np.full(5, np.inf, np.float32)
    heap_i = np.full(5, -1, np.int64)
    for dist, i in ((2.0, 9), (1.0, 4), (2.0, 3)):
        heap_push(heap_d, heap_i, np.float32(dist), i)
    heap_sort(heap_d, heap_i)
    assert heap_i.tolist() == [4, 3, 9, -1, -1] and np.isinf(heap_d[3:]).all()
