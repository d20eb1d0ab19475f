"""Fusing ranked lists from several retrievers (dense, BM25, sparse) into one ranking.

* ``rrf``: reciprocal rank fusion (Cormack et al. 2009), ``sum_r w_r / (k + rank_r)``
  with 1-based ranks and ``k = 60``; needs no score calibration.
* ``dbsf``: distribution-based score fusion (Qdrant): each list's scores are mapped
  by ``(s - (mean - 3 std)) / (6 std)`` over that list's candidates, then summed with
  the weights (a list whose scores are all equal maps to 0.5).
* ``weighted``: each list min-max normalised to [0, 1] (a single-valued list gives 1),
  then a weighted sum (Weaviate's relative score fusion).

A document missing from a list gets nothing from it. Ties break by the lower
internal id, so a fused ranking is deterministic.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError

METHODS = ("rrf", "dbsf", "weighted")
RRF_K = 60


@dataclass(frozen=True)
class FusionParams:
    method: str
    #: RRF's rank constant.
    k: int
    #: Candidates each retriever contributes (None: ``10 * k`` of the search).
    prefetch: int | None
    #: Retriever name -> weight (default 1).
    weights: dict[str, float]

    @classmethod
    def from_options(cls, method: Any, options: Mapping[str, Any] | None) -> "FusionParams":
        if method not in METHODS:
            raise InvalidArgumentError(f"unknown fusion {shorten(method)}; choose one of {', '.join(METHODS)}")
        if options is not None and not isinstance(options, Mapping):
            raise InvalidArgumentError(f"fusion_params must be a dict, got {shorten(options)}")
        options = dict(options or {})
        unknown = set(options) - {"k", "prefetch", "weights"}
        if unknown:
            raise InvalidArgumentError(f"unknown fusion_params {sorted(unknown)}; known: ['k', 'prefetch', 'weights']")
        k, prefetch = options.get("k", RRF_K), options.get("prefetch")
        for name, value in (("k", k), ("prefetch", prefetch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise InvalidArgumentError(f"fusion_params {name} must be a positive integer, got {shorten(value)}")
        weights = options.get("weights") or {}
        if not isinstance(weights, Mapping) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < float("inf")
                for w in weights.values()):
            raise InvalidArgumentError(f"fusion_params weights must map retriever names to numbers >= 0, "
                                       f"got {shorten(weights)}")
        return cls(method, int(k), None if prefetch is None else int(prefetch),
                   {str(n): float(w) for n, w in weights.items()})


def normalized(method: str, scores: np.ndarray) -> np.ndarray:
    """A list's scores (best first) as each method counts them."""
    if method == "rrf":
        raise AssertionError("rrf uses ranks")
    if not scores.size:
        return scores.astype(np.float64)
    s = scores.astype(np.float64)
    if method == "dbsf":
        mean, std = s.mean(), s.std()
        return np.full(s.size, 0.5) if std == 0 else (s - (mean - 3 * std)) / (6 * std)
    lo, hi = s.min(), s.max()
    return np.ones(s.size) if hi == lo else (s - lo) / (hi - lo)


def fuse(params: FusionParams, lists: Mapping[str, tuple[np.ndarray, np.ndarray]], k: int
         ) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """Fuse one query's lists ``name -> (ids, scores)`` (best first, no padding).

    Returns the k best ``(ids, fused scores, {retriever: its raw score})``.
    """
    total: dict[int, float] = {}
    found: dict[int, dict[str, float]] = {}
    for name, (ids, scores) in lists.items():
        w = params.weights.get(name, 1.0)
        if params.method == "rrf":
            parts = w / (params.k + np.arange(1, ids.size + 1, dtype=np.float64))
        else:
            parts = w * normalized(params.method, scores)
        for i, part, raw in zip(ids.tolist(), parts.tolist(), scores.tolist()):
            total[i] = total.get(i, 0.0) + part
            found.setdefault(i, {})[name] = raw
    order = sorted(total, key=lambda i: (-total[i], i))[:k]
    return (np.asarray(order, np.int64), np.asarray([total[i] for i in order], np.float64),
            [found[i] for i in order])
