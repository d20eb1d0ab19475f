"""Collection: the embedded API (upsert, get, delete, count, search) over its shard.

A Collection validates every argument before anything changes, so a rejected
call leaves the collection exactly as it was; the shard (``engine.shard``)
owns the data, the lock, the log and the optimizer.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..index.base import Index
from ..index.exact import ExactSearcher
from ..index.factory import make_index
from .backend import Backend, get_backend
from .errors import InvalidArgumentError
from .filters import Node, compile_filter
from .hybrid import hybrid_search
from .lexical import LexicalConfig
from .ids import check_ids, check_unique
from .metadata import check_metadata
from .metrics import check_metric, prepare, scores_from_distances
from .optimizer import OptimizerConfig
from .planner import PlannerConfig
from .results import GetResult, QueryResult
from .shard import Shard, ShardLayout
from .stores import MemoryStore
from .validation import as_matrix, check_k

INCLUDE_FIELDS = ("metadata", "distance", "vector")
#: Rows of the growing segment of an in-memory collection before it is sealed for the optimizer.
MEMORY_FLUSH_ROWS = 65536


def resolve_index_spec(index: str, dim: int, metric: str = "l2") -> str:
    """Map a collection's ``index`` argument to a factory spec (``auto`` by dimension)."""
    if isinstance(index, str) and index.lower() == "auto":
        from ..index.factory import auto_spec

        return auto_spec(dim, metric)
    return index


def _filter(spec: Any) -> tuple[Node | None, str | None]:
    """A compiled filter and its canonical text (the key segments cache its masks under)."""
    if spec is None:
        return None, None
    node = compile_filter(spec)
    return node, json.dumps(spec, sort_keys=True, default=repr)


class Collection:
    """A named set of (id, vector, metadata) records of one dimension and metric.

    ``optimizer`` and ``planner`` take the settings of ``engine.optimizer.OptimizerConfig``
    and ``engine.planner.PlannerConfig``; ``text_fields``, ``sparse_fields`` and
    ``text_options`` declare BM25 and sparse-vector fields (``engine.lexical``); other
    keyword options go to the index family.
    """

    def __init__(self, name: str, dim: int, metric: str = "cosine", index: str = "flat", *,
                 backend: str | Backend | None = None, optimizer: Mapping[str, Any] | None = None,
                 planner: Mapping[str, Any] | None = None, text_fields: Any = None, sparse_fields: Any = None,
                 text_options: Mapping[str, Any] | None = None, _store: Any = None, _flush_rows: int | None = None,
                 **index_options: Any) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r}")
        self.name = name
        self.dim = int(dim)
        self.metric = check_metric(metric)
        self.backend = get_backend(backend)
        self.index_spec = resolve_index_spec(index, self.dim, self.metric)
        self.index_options = dict(index_options)
        #: An empty index of the collection's family: validates options now and search params per call.
        self._template = make_index(self.index_spec, self.dim, self.metric, **self._index_kwargs())
        flush_rows = MEMORY_FLUSH_ROWS if _flush_rows is None else _flush_rows
        self.optimizer_config = OptimizerConfig.from_options(optimizer)
        self.planner_config = PlannerConfig.from_options(planner)
        self.lexical = LexicalConfig.from_options(text_fields, sparse_fields, text_options)
        indexes = not self._template.EXACT or getattr(self._template, "REPLACES_SCAN", False)
        layout = ShardLayout(name, self.dim, self.metric, ExactSearcher(self.metric, self.backend), self._new_index,
                             indexes, max(1, int(getattr(self._template, "min_train_size", 1))), self.lexical)
        store = MemoryStore(self.config_doc()) if _store is None else (
            _store(self.config_doc()) if callable(_store) else _store)
        self._shard = Shard(layout, store, flush_rows, self.optimizer_config, self.planner_config)

    def config_doc(self) -> dict[str, Any]:
        """What a manifest persists of the collection's creation options."""
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index_spec,
                "index_options": self.index_options, "optimizer": self.optimizer_config.to_dict(),
                "planner": self.planner_config.to_dict(),
                **({"lexical": self.lexical.to_options()} if self.lexical is not None else {})}

    def _index_kwargs(self) -> dict[str, Any]:
        return {**self.index_options, "backend": self.backend}

    def _new_index(self) -> Index | None:
        # exact indices are a scan the segment does itself, unless they replace it (k-d tree)
        if not self._shard.layout.indexes:
            return None
        return make_index(self.index_spec, self.dim, self.metric, **self._index_kwargs())

    # ----------------------------------------------------------------- writes
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int:
        """Insert or replace records; returns how many were written."""
        ids_list, x, payloads = self._check_upsert(ids, vectors, metadata)
        self._shard.upsert(ids_list, x, payloads)
        return len(ids_list)

    def _check_upsert(self, ids: Any, vectors: Any, metadata: Any) -> tuple[list[Any], np.ndarray, list[dict[str, Any]]]:
        ids_list = check_ids(ids)
        x = as_matrix(vectors, self.dim)
        if len(ids_list) != x.shape[0]:
            raise InvalidArgumentError(f"got {len(ids_list)} ids for {x.shape[0]} vectors; lengths must match")
        check_unique(ids_list)
        if metadata is None:
            payloads = [{} for _ in ids_list]
        else:
            if isinstance(metadata, Mapping):
                metadata = [metadata]
            metadata = list(metadata)
            if len(metadata) != len(ids_list):
                raise InvalidArgumentError(f"got {len(metadata)} metadata entries for {len(ids_list)} ids; lengths must match")
            payloads = [check_metadata(m, f"metadata[{i}]") for i, m in enumerate(metadata)]
        if self.lexical is not None:
            self.lexical.check_payloads(payloads)
        return ids_list, prepare(x, self.metric), payloads

    def delete(self, ids: Any = None, filter: Any = None) -> int:
        """Delete by ids (all must exist) and/or by filter; returns how many were deleted."""
        if ids is None and filter is None:
            raise InvalidArgumentError("delete needs ids or a filter (use filter={} to delete everything)")
        ids_list = None if ids is None else check_ids(ids)
        node, key = _filter(filter)
        return self._shard.delete(ids_list, node, key)

    # ----------------------------------------------------- optimizer/storage
    def optimize(self, wait: bool = True) -> None:
        """Seal the growing segment and merge segments into indexed ones (``wait``: until done)."""
        self._shard.optimize(wait)

    def compact(self) -> bool:
        """Drop every deleted row now (rebuilding the segments that hold them) and merge;
        returns whether anything changed."""
        return self._shard.compact()

    def flush(self) -> None:
        """Seal the growing segment (durably: to files, checkpointing the write-ahead log)."""
        self._shard.flush()

    def snapshot(self, dest: str | os.PathLike) -> None:
        """Write a consistent copy of this collection to ``dest`` (a new directory)."""
        self._shard.snapshot(Path(dest))

    # ------------------------------------------------------------------ reads
    def __len__(self) -> int:
        return len(self._shard.tracker)

    def count(self, filter: Any = None) -> int:
        """Number of records, or of those matching ``filter``."""
        node, key = _filter(filter)
        with self._shard.lock.read():
            self._shard.check_open()
            return self._shard.count(node, key)

    def get(self, ids: Any) -> GetResult:
        """Vectors and metadata for ids, in the order given; unknown ids raise IdNotFoundError."""
        ids_list = check_ids(ids)
        shard = self._shard
        with shard.lock.read():
            shard.check_open()
            internal = shard.tracker.internal_of(ids_list, f"collection {self.name!r}")
            _, metadata, vectors = shard.records(internal, True, True)
        return GetResult(ids_list, vectors, metadata)

    def search(self, queries: Any = None, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = ("metadata", "distance"), explain: bool = False, *, text: Any = None,
               sparse: Any = None, fusion: str = "rrf", fusion_params: Mapping[str, Any] | None = None
               ) -> QueryResult | list[QueryResult]:
        """k nearest records per query, optionally among those matching ``filter``.

        A 1-D query returns one QueryResult; a 2-D batch returns a list. ``explain=True``
        attaches the plan of every segment to each result (``result.plan``). ``text``
        (BM25 over the text fields) and ``sparse`` (sparse vectors) search alone or with
        ``queries``, fused by ``fusion`` ("rrf", "dbsf", "weighted"; ``engine.hybrid``).
        """
        if text is not None or sparse is not None:
            if explain:
                raise InvalidArgumentError("explain covers dense searches only; drop text/sparse to see the plan")
            return hybrid_search(self, queries, k, filter, params, self._check_include(include), text, sparse,
                                 fusion, fusion_params)
        if queries is None:
            raise InvalidArgumentError("search needs queries (vectors), text or sparse")
        single = np.ndim(queries) == 1
        q = prepare(as_matrix(queries, self.dim, name="queries"), self.metric)
        k = check_k(k)
        node, key = _filter(filter)
        include = self._check_include(include)
        params = self._template.check_params(params)
        want_meta, want_vectors = "metadata" in include, "vector" in include
        shard = self._shard
        with shard.lock.read():
            shard.check_open()
            d, internal, plans = shard.search(q, k, node, key, params)
            rows = [self._result_row(d[i], internal[i], want_meta, want_vectors) for i in range(q.shape[0])]
        if explain:
            described = [p.describe() for p in plans]
            for r in rows:
                r.plan = described
        return rows[0] if single else rows

    @staticmethod
    def _check_include(include: Iterable[str]) -> tuple[str, ...]:
        include = tuple(include)
        bad = [f for f in include if f not in INCLUDE_FIELDS]
        if bad:
            raise InvalidArgumentError(f"unknown include field(s) {bad}; choose from {INCLUDE_FIELDS}")
        return include

    def explain(self, queries: Any, k: int = 10, filter: Any = None,
                params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The plan a search takes in every segment: path, reason, rows matched, params used."""
        result = self.search(queries, k, filter, params, include=(), explain=True)
        return (result if isinstance(result, QueryResult) else result[0]).plan

    def _result_row(self, d: np.ndarray, internal: np.ndarray, want_meta: bool, want_vectors: bool) -> QueryResult:
        keep = internal >= 0
        if not keep.all():
            d, internal = d[keep], internal[keep]
        ext, metadata, vectors = self._shard.records(internal, want_meta, want_vectors)
        return QueryResult(ext, d.astype(np.float32, copy=False),
                           scores_from_distances(d, self.metric).astype(np.float32, copy=False), metadata, vectors)

    def describe(self) -> dict[str, Any]:
        """Name, shape, index configuration and storage state (segments, indexing, optimizer)."""
        with self._shard.lock.read():
            shard = self._shard.describe()
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index_spec,
                "index_options": dict(self.index_options), "count": len(self),
                "segments": len(shard["segments"]), "backend": self.backend.name, **{
                    k: v for k, v in shard.items() if k != "segments"}, "segment_list": shard["segments"]}

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_spec!r}, count={len(self)})"
