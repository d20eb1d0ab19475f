"""An open-addressing hash map int64 -> int64 in flat arrays (linear probing, tombstones).

The id tracker keeps integer ids here: 16 bytes a slot at load <= 1/2, against ~100 bytes
for a Python dict entry with its int objects. Every operation is a batch.
"""
from __future__ import annotations

import numba as nb
import numpy as np

EMPTY, USED, GONE = 0, 1, 2


@nb.njit(cache=True, inline="always")
def _slot(key, mask):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads sequential ids
    return np.int64((h >> np.uint64(17)) & np.uint64(mask))


@nb.njit(cache=True, nogil=True)
def lookup(keys, values, state, query, out):
    """``out[i]`` = value of ``query[i]``, or -1 when absent."""
    mask = keys.shape[0] - 1
    for i in range(query.shape[0]):
        key = query[i]
        s = _slot(key, mask)
        out[i] = -1
        while state[s] != EMPTY:
            if state[s] == USED and keys[s] == key:
                out[i] = values[s]
                break
            s = (s + 1) & mask
    return out


@nb.njit(cache=True, nogil=True)
def insert(keys, values, state, new_keys, new_values):
    """Set each key's value (overwriting); returns ``(keys added, tombstones reused)``.

    The caller keeps the table at most half full (live + tombstones), so a probe always ends."""
    mask = keys.shape[0] - 1
    added = 0
    reused = 0
    for i in range(new_keys.shape[0]):
        key = new_keys[i]
        s = _slot(key, mask)
        free = -1
        while state[s] != EMPTY:
            if state[s] == USED and keys[s] == key:
                break
            if state[s] == GONE and free < 0:
                free = s
            s = (s + 1) & mask
        if state[s] == USED:
            values[s] = new_values[i]
            continue
        if free >= 0:
            s = free
            reused += 1
        keys[s] = key
        values[s] = new_values[i]
        state[s] = USED
        added += 1
    return added, reused


@nb.njit(cache=True, nogil=True)
def remove(keys, values, state, gone_keys):
    """Remove keys (absent ones are ignored); returns how many were removed."""
    mask = keys.shape[0] - 1
    removed = 0
    for i in range(gone_keys.shape[0]):
        key = gone_keys[i]
        s = _slot(key, mask)
        while state[s] != EMPTY:
            if state[s] == USED and keys[s] == key:
                state[s] = GONE
                removed += 1
                break
            s = (s + 1) & mask
    return removed
