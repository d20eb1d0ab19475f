"""Benchmark metrics: recall against ground truth, latency percentiles."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def recall_at_k(found: Sequence[Sequence[Any]], truth: Sequence[Sequence[Any]], k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / min(k, |truth|); queries with no truth are skipped."""
    hits = 0
    total = 0
    for f, t in zip(found, truth):
        t = [x for x in list(t)[:k] if not (isinstance(x, (int, np.integer)) and x < 0)]
        if not t:
            continue
        hits += len(set(list(f)[:k]) & set(t))
        total += len(t)
    return hits / total if total else 1.0
