"""Search beyond plain top-k: range search, score thresholds, grouping and recommendation.

* ``search_range``: every record within ``radius`` (distance < radius) of each query. Per segment
  the planner picks the path as for a search (``engine.planner.plan_segment``): a segment without
  an index, or with few matching rows, is scanned exactly; an indexed one answers through its
  index's ``range_search`` with the filter's mask pushed in. Flat, HNSW and the k-d tree are exact
  (HNSW and the quantized families scan their stored vectors for it); IVF scans the ``nprobe``
  lists nearest each query, so it is exactly as approximate as its k-NN search.
* ``score_threshold``: hits at least that similar (score >= threshold), applied after the top-k.
* ``group_by``: the best ``group_size`` hits per distinct value of a payload field (a dotted path
  reaches nested fields; a list value puts the hit in the group of each element; hits without
  the field, or with a dict value, belong to no group). It searches ``k * group_size * 2`` hits
  first and doubles until ``k`` groups are full or no more hits exist.
* ``recommend``: Qdrant's average-vector strategy: ``avg(positive) + (avg(positive) - avg(negative))``
  searched like a query, with the example records themselves left out of the result.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError
from .filters import _MISSING, keyed_filter, resolve_path
from .ids import check_ids
from .metrics import prepare
from .planner import plan_segment
from .results import Group, QueryResult
from .validation import as_matrix, check_k, max_k

SEARCH_FIELDS = ("metadata", "distance", "vector")


def check_threshold(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not np.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a finite number, got {shorten(value)}")
    return float(value)


def apply_threshold(result: QueryResult, threshold: float | None) -> QueryResult:
    """Keep the hits with score >= threshold (they are sorted, so a prefix)."""
    if threshold is None:
        return result
    n = int(np.count_nonzero(result.scores >= np.float32(threshold)))
    if n == len(result):
        return result
    return QueryResult(result.ids[:n], result.distances[:n], result.scores[:n],
                       None if result.metadata is None else result.metadata[:n],
                       None if result.vectors is None else result.vectors[:n], result.plan)


def group_values(payload: Mapping[str, Any] | None, field: str) -> list[Any]:
    """The group keys of one hit (see the module docstring): ``(is_bool, value)`` pairs."""
    value = _MISSING if payload is None else resolve_path(payload, field)
    if value is _MISSING:
        return []
    values = value if isinstance(value, list) else [value]
    return list(dict.fromkeys((type(v) is bool, v) for v in values
                              if v is None or isinstance(v, (str, int, float, bool))))


def make_groups(result: QueryResult, field: str, k: int, size: int, keep_meta: bool) -> tuple[list[Group], bool]:
    """Groups in order of their best hit; returns them and whether all ``k`` are full."""
    members: dict[Any, list[int]] = {}
    for i, payload in enumerate(result.metadata or []):
        for key in group_values(payload, field):  # True and 1 are different groups
            rows = members.get(key)
            if rows is None:
                if len(members) == k:
                    continue
                rows = members[key] = []
            if len(rows) < size:
                rows.append(i)
    groups = []
    for (_, value), rows in members.items():
        meta = [result.metadata[r] for r in rows] if keep_meta and result.metadata is not None else None
        vectors = None if result.vectors is None else result.vectors[rows]
        groups.append(Group(value, QueryResult([result.ids[r] for r in rows], result.distances[rows],
                                               result.scores[rows], meta, vectors)))
    full = len(groups) == k and all(len(g.hits) == size for g in groups)
    return groups, full


def check_group(group_by: Any, group_size: Any) -> int:
    if not isinstance(group_by, str) or not group_by:
        raise InvalidArgumentError(f"group_by must be a field name (a dotted path for nested fields), "
                                   f"got {shorten(group_by)}")
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise InvalidArgumentError(f"group_size must be a positive integer, got {shorten(group_size)}")
    return int(group_size)


def split_examples(examples: Any, name: str, dim: int) -> tuple[list[Any], np.ndarray]:
    """Recommendation examples: ids (int or str) and vectors (sequences of numbers), in any mix."""
    if examples is None:
        return [], np.zeros((0, dim), np.float32)
    if isinstance(examples, np.ndarray):
        examples = [examples] if examples.ndim == 1 else list(examples)
    if isinstance(examples, (str, int, np.integer)):
        examples = [examples]
    ids, vectors = [], []
    for i, item in enumerate(list(examples)):
        if isinstance(item, (str, int, np.integer)) and not isinstance(item, bool):
            ids.append(item)
        else:
            vectors.append(as_matrix(item, dim, name=f"{name}[{i}]")[0] if np.ndim(item) == 1 else
                           _bad_example(name, i, item))
    return check_ids(ids, f"{name} ids"), (np.stack(vectors).astype(np.float32) if vectors
                                           else np.zeros((0, dim), np.float32))


def _bad_example(name: str, i: int, item: Any) -> np.ndarray:
    raise InvalidArgumentError(f"{name}[{i}] must be a record id or one vector, got {shorten(item)}")


class SearchModes:
    """Range search, grouped search and recommendation of ``Collection`` (uses its shard and search)."""

    _shard: Any
    dim: int
    metric: str
    _template: Any

    def search_range(self, queries: Any, radius: float, filter: Any = None, limit: int | None = None,
                     params: Mapping[str, Any] | None = None, include: Iterable[str] = ("metadata", "distance")
                     ) -> QueryResult | list[QueryResult]:
        """Every record with distance < ``radius`` of each query (best first), among those matching
        ``filter``; at most ``limit`` per query (None: all). Distances are the metric's (squared L2,
        ``1 - cos``, negative inner product), so a cosine similarity s is radius ``1 - s``.
        ``params`` as for ``search`` (IVF's ``nprobe`` bounds the lists scanned). A 1-D query returns
        one QueryResult, a 2-D batch a list.
        """
        single = np.ndim(queries) == 1
        q = prepare(as_matrix(queries, self.dim, name="queries"), self.metric)
        radius = check_threshold(radius, "radius")
        limit = None if limit is None else check_k(limit)
        node, key = keyed_filter(filter)
        want_meta, want_vectors = self._check_search_include(include)
        params = self._template.check_params(params)
        shard = self._shard
        with shard.lock.read():
            shard.check_open()
            parts = [self._segment_range(seg, q, radius, node, key, params) for seg in shard.segments if seg.n]
            rows = []
            for i in range(q.shape[0]):
                d = np.concatenate([p[i][0] for p in parts]) if parts else np.zeros(0, np.float32)
                ids = np.concatenate([p[i][1] for p in parts]) if parts else np.zeros(0, np.int64)
                order = np.lexsort((ids, d))[:limit]
                rows.append(self._result_row(d[order], ids[order], want_meta, want_vectors))
        return rows[0] if single else rows

    def _segment_range(self, seg: Any, q: np.ndarray, radius: float, node: Any, key: str | None,
                       params: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(distances, internal ids)`` per query of one segment, on the planner's path."""
        plan = plan_segment(seg, 1, node, key, params, self._shard.planner)
        nq = q.shape[0]
        if plan.path == "skip":
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64))] * nq
        if plan.path == "exact":
            n = seg.n
            mask = seg.live[:n] if plan.mask is None else plan.mask
            lims, d, rows = seg.exact.kernels.range_search(q, seg.vectors[:n], seg.norms[:n],
                                                           np.arange(n, dtype=np.int64), mask, radius, self.metric)
        else:
            lims, d, rows = seg.index.range_search(q, radius, params=plan.params, allowed=plan.mask)
        return [(d[lims[i]:lims[i + 1]], rows[lims[i]:lims[i + 1]] + seg.base) for i in range(nq)]

    def _check_search_include(self, include: Iterable[str]) -> tuple[bool, bool]:
        include = (include,) if isinstance(include, str) else tuple(include)
        bad = [f for f in include if f not in SEARCH_FIELDS]
        if bad:
            raise InvalidArgumentError(f"unknown include field(s) {bad}; choose from {SEARCH_FIELDS}")
        return "metadata" in include, "vector" in include

    def _grouped_search(self, q: Any, k: int, filter: Any, params: Any, include: tuple[str, ...],
                        threshold: float | None, group_by: Any, group_size: Any) -> list[Group] | list[list[Group]]:
        """``search(..., group_by=...)``: see the module docstring."""
        size = check_group(group_by, group_size)
        k = check_k(k)
        keep_meta = "metadata" in include
        single = np.ndim(q) == 1
        queries = as_matrix(q, self.dim, name="queries")
        out = []
        for row in queries:
            fetch = min(k * size * 2, max_k(), max(len(self), 1))
            while True:
                res = self.search(row, fetch, filter, params, include=(*include, "metadata"),
                                  score_threshold=threshold)
                groups, full = make_groups(res, group_by, k, size, keep_meta)
                if full or len(res) < fetch or fetch >= max_k():
                    break
                fetch = min(fetch * 2, max_k())
            out.append(groups)
        return out[0] if single else out

    def recommend(self, positive: Any, negative: Any = None, k: int = 10, filter: Any = None,
                  params: Mapping[str, Any] | None = None, include: Iterable[str] = ("metadata", "distance"),
                  score_threshold: float | None = None) -> QueryResult:
        """Records like the ``positive`` examples and unlike the ``negative`` ones (Qdrant's
        ``recommend``, average-vector strategy). Examples are record ids or vectors, mixed freely;
        an unknown id raises IdNotFoundError. Example records are left out of the result."""
        pos_ids, pos_vec = split_examples(positive, "positive", self.dim)
        neg_ids, neg_vec = split_examples(negative, "negative", self.dim)
        if not pos_ids and not pos_vec.shape[0]:
            raise InvalidArgumentError("recommend needs at least one positive example (an id or a vector)")
        k = check_k(k)
        stored = self.get(pos_ids + neg_ids, include=("vector",)).vectors if pos_ids or neg_ids else None
        pos = np.concatenate([prepare(pos_vec, self.metric), stored[:len(pos_ids)]]) if stored is not None \
            else prepare(pos_vec, self.metric)
        neg = np.concatenate([prepare(neg_vec, self.metric), stored[len(pos_ids):]]) if stored is not None \
            else prepare(neg_vec, self.metric)
        center = pos.mean(axis=0)
        query = center + (center - neg.mean(axis=0)) if neg.shape[0] else center
        examples = set(pos_ids) | set(neg_ids)
        res = self.search(query.astype(np.float32), min(k + len(examples), max_k()), filter, params, include,
                          score_threshold=score_threshold)
        keep = [i for i, ext in enumerate(res.ids) if ext not in examples][:k]
        return QueryResult([res.ids[i] for i in keep], res.distances[keep], res.scores[keep],
                           None if res.metadata is None else [res.metadata[i] for i in keep],
                           None if res.vectors is None else res.vectors[keep])

