"""Tests on the few rows a search returns, without a numpy reduction.

A one-query search gathers ids and payloads for ~10 rows, and there every ``(a == x).all()``
costs ~1.3 µs of ufunc and reduction set-up, a few times per call. Comparing the rows' bytes
costs ~0.1 µs and says the same for integer arrays.
"""
from __future__ import annotations

import numpy as np


def all_are(kinds: np.ndarray, kind: int) -> bool:
    """Every entry of a one-byte integer array (the id and payload kind codes, 0-127) equals ``kind``
    (true for an empty array)."""
    return kinds.tobytes().count(kind) == kinds.size


def all_same(values: np.ndarray) -> bool:
    """Every entry of an integer array equals its first (true for an empty array)."""
    return values.tobytes() == values[:1].tobytes() * values.size
