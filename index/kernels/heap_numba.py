"""Bounded top-k selection for the Numba kernels: a max-heap on (distance, id), O(log k) per candidate.

The kernels used to keep each query's k best in a sorted array and insert by shifting,
O(k) per accepted candidate: k = 2**26 over 400 rows ran past a 10 s deadline (issue 15).
Here the k slots are a binary max-heap whose root ``dist[0]`` is the worst kept entry, so
the kernels' "can this candidate enter?" test reads ``dist[0]`` and a push costs O(log k);
:func:`heap_sort` turns the heap into the ascending (distance, id) order callers expect,
once per query, in O(k log k).

Slots start as ``(inf, -1)``: an array of them is a valid heap, and id -1 orders after every
real id, so empty slots are always the first replaced. Ties break by the lower id, exactly
as the sorted insertion did, so results are identical.
"""
from __future__ import annotations

import numba as nb

_NO_ID = 1 << 62  # how an empty slot's id -1 orders: after every real id


@nb.njit(cache=True, inline="always")
def before(d1, i1, d2, i2):
    """Strict order on (distance, id): ties go to the lower id, empty slots (id -1) last."""
    j1 = i1 if i1 >= 0 else _NO_ID
    j2 = i2 if i2 >= 0 else _NO_ID
    return d1 < d2 or (d1 == d2 and j1 < j2)


@nb.njit(cache=True, inline="always")
def _sift_down(dist, ids, d, i, pos, size):
    """Place (d, i) at ``pos`` of the heap ``[0, size)``, moving worse children up."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and before(dist[child], ids[child], dist[child + 1], ids[child + 1]):
            child += 1  # the worse child
        if not before(d, i, dist[child], ids[child]):
            break
        dist[pos] = dist[child]
        ids[pos] = ids[child]
        pos = child
    dist[pos] = d
    ids[pos] = i


@nb.njit(cache=True, inline="always")
def heap_push(dist, ids, d, i):
    """Keep (d, i) if it beats the worst kept entry ``dist[0]`` (which it then replaces)."""
    if before(d, i, dist[0], ids[0]):
        _sift_down(dist, ids, d, i, 0, dist.shape[0])


@nb.njit(cache=True)
def heap_sort(dist, ids):
    """Heap -> ascending (distance, id), in place."""
    for end in range(dist.shape[0] - 1, 0, -1):
        d, i = dist[end], ids[end]
        dist[end], ids[end] = dist[0], ids[0]
        _sift_down(dist, ids, d, i, 0, end)


@nb.njit(cache=True, parallel=True)
def heap_sort_rows(dist, ids):
    """:func:`heap_sort` of every row of ``(nq, k)`` arrays."""
    for r in nb.prange(dist.shape[0]):
        heap_sort(dist[r], ids[r])
