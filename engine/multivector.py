"""Multi-vector records with late interaction (ColBERT's MaxSim).

``db.create_collection("docs", dim=128, multivector="maxsim")`` makes a collection whose records hold
a variable number of vectors (one per token, per image crop, per facet of an item); a query is a
set of vectors, and a record scores ``sum over query vectors q of max over its vectors d of
sim(q, d)``, where sim is the collection's similarity (cosine, inner product, or minus the squared
L2 distance). Distances are ``-score``.

A search runs in two stages: every query vector fetches ``candidates`` nearest stored vectors from
the collection's index (any family: HNSW, IVF, ... built over all stored vectors, filtered like any
search), their records are the candidates, and each candidate is re-ranked by exact MaxSim over
all its vectors (``index/kernels/maxsim_*``). ``exact=True`` re-ranks every record matching the
filter instead (an exhaustive MaxSim). Records are runs of rows of the shard
(``engine.multivector_shard``), so filters, deletes, persistence, snapshots and optimizer merges are
the row store's own, applied per record.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .backend import load_kernels
from .collection import DEFAULT_INCLUDE, INCLUDE_FIELDS, Collection, _filter
from .errors import IdNotFoundError, InvalidArgumentError, UnimplementedError
from .ids import check_ids, check_unique
from .metrics import prepare
from .multivector_shard import MultiVectorShard
from .records import check_include
from .results import QueryResult
from .search_modes import apply_threshold, check_threshold
from .threads import threads_for_batch
from .validation import as_matrix, as_queries, check_k, max_k

MULTIVECTOR_MODES = ("maxsim",)
#: Stored vectors each query vector fetches by default (at least k): on 2,000 records of GloVe word
#: vectors (``bench.multivector_bench``) it gave recall@10 0.86 against exhaustive MaxSim with HNSW16;
#: ``candidates=`` trades speed for recall per call, ``exact=True`` is exhaustive.
DEFAULT_CANDIDATES = 64


def check_multivector(mode: Any) -> str:
    if not isinstance(mode, str) or mode.lower() not in MULTIVECTOR_MODES:
        raise InvalidArgumentError(f"multivector must be one of {list(MULTIVECTOR_MODES)}, got {mode!r}")
    return mode.lower()


def as_vector_sets(value: Any, dim: int, name: str) -> list[np.ndarray]:
    """A batch of vector sets: a list of ``(m_i, dim)`` arrays (or of one vector each), or an
    ``(n, m, dim)`` array; each set non-empty and finite."""
    if isinstance(value, np.ndarray) and value.ndim == 3:
        value = list(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidArgumentError(f"{name} must be a non-empty list of vector sets (one (m, {dim}) array per "
                                   f"record or query), got {type(value).__name__}")
    return [as_matrix(v, dim, name=f"{name}[{i}]") for i, v in enumerate(value)]


def check_records(ids: Any, vectors: Any, dim: int) -> tuple[list[Any], list[np.ndarray]]:
    """An upsert's ids (unique) and one checked vector set per id (both empty for an empty batch)."""
    single = isinstance(ids, (str, int, np.integer)) and not isinstance(ids, bool)
    ids_list = check_ids(ids)
    if not ids_list and isinstance(vectors, (list, tuple, np.ndarray)) and len(vectors) == 0:
        return [], []
    sets = as_vector_sets([vectors] if single else vectors, dim, "vectors")
    if len(sets) != len(ids_list):
        raise InvalidArgumentError(f"got {len(ids_list)} ids for {len(sets)} vector sets; lengths must match")
    check_unique(ids_list)
    return ids_list, sets


def is_set_batch(queries: Any) -> bool:
    """A list of 2-D sets (or a 3-D array) is a batch; one 2-D set (or one vector) is one query."""
    if isinstance(queries, np.ndarray):
        return queries.ndim == 3
    return isinstance(queries, (list, tuple)) and bool(queries) and all(np.ndim(v) == 2 for v in queries)


class MultiVectorCollection(Collection):
    """A collection of multi-vector records (see the module docstring); made by
    ``create_collection(..., multivector="maxsim")``. ``upsert`` takes one ``(m, dim)`` array per id,
    ``search`` one query set or a list of them, ``get`` returns each record's vectors as an
    ``(m, dim)`` array."""

    _shard_class = MultiVectorShard
    _shard: MultiVectorShard

    def __init__(self, name: str, dim: int, metric: str = "cosine", index: str = "flat", *,
                 multivector: str = "maxsim", text_fields: Any = None, sparse_fields: Any = None,
                 **options: Any) -> None:
        self.multivector = check_multivector(multivector)
        if text_fields or sparse_fields:
            raise InvalidArgumentError("text_fields and sparse_fields are not available on a multivector collection; "
                                       "keep the text in a separate collection and fuse the results")
        super().__init__(name, dim, metric, index, **options)
        self._maxsim = load_kernels("shoal.index.kernels", "maxsim", self.backend)

    def config_doc(self) -> dict[str, Any]:
        doc = super().config_doc()
        doc["index_options"] = {**doc["index_options"], "multivector": self.multivector}
        return doc

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["index_options"] = {**out["index_options"], "multivector": self.multivector}
        out["multivector"] = self.multivector
        out["vectors"] = sum(s.live_count for s in self._shard.segments)
        return out

    # ----------------------------------------------------------------- writes
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int:
        """Insert or replace whole records: ``vectors`` holds one ``(m, dim)`` array per id (any m >= 1;
        for a single id, its one array); ``metadata`` as for ``Collection.upsert``. Returns the number of
        records written."""
        ids_list, sets = check_records(ids, vectors, self.dim)
        if not ids_list:
            return 0
        payloads = self._check_payloads(metadata, len(ids_list))
        counts = [s.shape[0] for s in sets]
        x = prepare(np.concatenate(sets), self.metric)
        self._shard.upsert(_repeat(ids_list, counts), x, _repeat(payloads, counts))
        return len(ids_list)

    def update(self, ids: Any, *, vectors: Any = None, metadata: Any = None) -> int:
        """Replace the payloads of existing records (one dict for all, or one per id); every id must
        exist. A record's vectors change by upserting it."""
        if vectors is not None:
            raise UnimplementedError("update(vectors=...) is not available on a multivector collection: "
                                     "upsert the record with its new vectors and metadata")
        if metadata is None:
            raise InvalidArgumentError("update needs metadata (vectors change by upsert)")
        ids_list = check_ids(ids)
        check_unique(ids_list)
        many = metadata if not isinstance(metadata, Mapping) else [metadata] * len(ids_list)
        payloads = self._check_payloads(many, len(ids_list))
        missing = [e for e, there in zip(ids_list, self.exists(ids_list)) if not there]
        if missing:
            raise IdNotFoundError(f"ids not found in collection {self.name!r}: {missing[:10]}")
        for ext, payload in zip(ids_list, payloads):  # each record rewritten whole, durably
            self._shard.rewrite([ext], None, None, lambda x, old, p=payload: (x, [dict(p) for _ in old]), strict=True)
        return len(ids_list)

    # ------------------------------------------------------------------ reads
    def search(self, queries: Any = None, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = DEFAULT_INCLUDE, explain: bool = False, *,
               candidates: int | None = None, exact: bool = False, score_threshold: float | None = None,
               **unsupported: Any) -> QueryResult | list[QueryResult]:
        """The k records of best MaxSim per query set. ``queries``: one set (an ``(m, dim)`` array, or one
        vector) or a list of sets (a list of result). ``candidates``: stored vectors each query vector
        fetches from the index (default 64); ``exact=True``: score every matching record.
        ``score_threshold`` keeps hits whose MaxSim score is >= it. ``params``, ``filter``,
        ``include`` and ``explain`` as for ``Collection.search``; ``candidates`` and ``exact`` may also be
        given in ``params`` (as over gRPC)."""
        used = {key for key, value in unsupported.items() if value not in (None, 1, "rrf")}
        if used:
            raise InvalidArgumentError(f"search option(s) {sorted(used)} are not available on a multivector "
                                       "collection")
        if queries is None:
            raise InvalidArgumentError("search needs queries: a set of vectors, or a list of sets")
        params = dict(params or {})  # over gRPC candidates/exact travel as params
        candidates = params.pop("candidates", candidates)
        exact = params.pop("exact", exact)
        if not isinstance(exact, (bool, np.bool_)):
            raise InvalidArgumentError(f"exact must be true or false, got {exact!r}")
        batch = is_set_batch(queries)
        sets = [as_queries(s, self.dim, normalize=self.metric == "cosine", name=f"queries[{i}]")
                for i, s in enumerate(queries if batch else [queries])]
        k = check_k(k)
        if candidates is not None and (isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer))
                                       or candidates <= 0):
            raise InvalidArgumentError(f"candidates must be a positive integer, got {candidates!r}")
        depth = min(max(k, DEFAULT_CANDIDATES) if candidates is None else int(candidates), max_k())
        threshold = check_threshold(score_threshold, "score_threshold")
        node, key = _filter(filter)
        include = check_include(include, INCLUDE_FIELDS)
        params = self._template.check_params(params)
        q = np.concatenate(sets)
        q_off = np.concatenate([[0], np.cumsum([s.shape[0] for s in sets])]).astype(np.int64)
        shard = self._shard
        plans: list[Any] = []
        with shard.lock.read():
            shard.check_open()
            if exact:
                everyone = shard.matching_heads(node, key)
                per_set = [everyone] * len(sets)
            else:
                _, internal, plans = shard.search(q, depth, node, key, params)
                per_set = [shard.heads_of(internal[q_off[s]:q_off[s + 1]].ravel()) for s in range(len(sets))]
            scores = self._rerank(q, q_off, per_set)
            rows = []
            for s, heads in enumerate(per_set):
                score = scores[s]
                order = np.lexsort((heads, -score))[:k]
                ext, meta, vectors = shard.records(heads[order], "metadata" in include, "vector" in include)
                top = score[order].astype(np.float32)
                rows.append(apply_threshold(QueryResult(ext, -top, top, meta, vectors), threshold))
        if explain:
            described = [p.describe() for p in plans]
            for r in rows:
                r.plan = described
        return rows if batch else rows[0]

    def _rerank(self, q: np.ndarray, q_off: np.ndarray, per_set: list[np.ndarray]) -> list[np.ndarray]:
        """Exact MaxSim of every (query set, candidate record) pair, one kernel call per segment."""
        pair_set = np.repeat(np.arange(len(per_set), dtype=np.int64), [h.size for h in per_set])
        heads = np.concatenate(per_set) if per_set else np.zeros(0, np.int64)
        scores = np.zeros(heads.size, np.float32)
        if heads.size:
            with threads_for_batch(heads.size):
                for seg, pos, first, end in self._shard.spans(heads):
                    n = seg.n
                    scores[pos] = self._maxsim.maxsim(q, q_off, pair_set[pos], seg.vectors[:n], first, end,
                                                      self.metric == "l2")
        bounds = np.cumsum([0] + [h.size for h in per_set])
        return [scores[bounds[i]:bounds[i + 1]] for i in range(len(per_set))]

    def search_range(self, *args: Any, **kwargs: Any) -> Any:
        raise UnimplementedError("search_range is not available on a multivector collection; use search")

    def recommend(self, *args: Any, **kwargs: Any) -> Any:
        raise UnimplementedError("recommend is not available on a multivector collection; use search")

    def __repr__(self) -> str:
        return (f"MultiVectorCollection({self.name!r}, dim={self.dim}, metric={self.metric!r}, "
                f"index={self.index_spec!r}, count={len(self)})")


def _repeat(items: list[Any], counts: list[int]) -> list[Any]:
    """Each item once per vector of its record (the rows of a run share its id and payload)."""
    return [item for item, m in zip(items, counts) for _ in range(m)]
