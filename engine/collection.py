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
from .disk_vectors import check_vectors_on_disk, disk_walk_options
from .errors import InvalidArgumentError
from .filters import keyed_filter
from .hybrid import hybrid_search
from .lexical import LexicalConfig
from .ids import check_ids, check_unique
from .metadata import check_metadata
from .payload_index_admin import create_payload_index, drop_payload_index
from .metrics import check_metric, prepare, scores_from_distances
from .optimizer import OptimizerConfig
from .payload_index import PayloadIndexConfig
from .planner import PlannerConfig
from .records import RecordAPI, check_include
from .results import Group, QueryResult
from .search_modes import SearchModes, apply_threshold, check_threshold
from .shard import Shard, ShardLayout
from .stores import MemoryStore
from .validation import as_matrix, as_queries, check_k

INCLUDE_FIELDS = ("metadata", "distance", "vector")
DEFAULT_INCLUDE = ("metadata", "distance")
#: Rows of the growing segment of an in-memory collection before it is sealed for the optimizer.
MEMORY_FLUSH_ROWS = 65536


def resolve_index_spec(index: str, dim: int, metric: str = "l2") -> str:
    """Map a collection's ``index`` argument to a factory spec (``auto`` by dimension)."""
    if isinstance(index, str) and index.lower() == "auto":
        from ..index.factory import auto_spec

        return auto_spec(dim, metric)
    return index


_filter = keyed_filter


class Collection(RecordAPI, SearchModes):
    """A named set of (id, vector, metadata) records of one dimension and metric.

    ``optimizer`` and ``planner`` take the settings of ``engine.optimizer.OptimizerConfig``
    and ``engine.planner.PlannerConfig``; ``metadata`` is a small dict of the user's own about the
    collection (shown by ``describe()``, persisted); ``text_fields``, ``sparse_fields`` and
    ``text_options`` declare BM25 and sparse-vector fields (``engine.lexical``); ``payload_indexes``
    (``{"tag": "keyword", "year": "range"}``) the fields filters read through per-segment indexes
    (``engine.payload_index``); ``vectors_on_disk=True`` keeps a code-walking index's full-precision
    vectors memory-mapped (``engine.disk_vectors``); other keyword options go to the index family.
    Record reads and partial updates live in ``engine.records``, range search, grouping and
    recommendation in ``engine.search_modes``.

    Filters (``filter=``) use the language of ``engine.filters``: ``{"lang": "en"}``,
    ``{"year": {"$gte": 2020}}``, ``$eq $ne $gt $gte $lt $lte $in $nin $exists``, ``$and $or $not``,
    dotted paths for nested fields (``{"author.name": "x"}``).
    Search ``params`` per index family: HNSW ``ef_search``; IVF ``nprobe``; lossy families
    (PQ, SQ, IVF-PQ/SQ) ``rescore`` and ``oversample``; k-d tree ``max_leaves``; Flat none.
    Errors are ``ShoalError`` subclasses (``InvalidArgumentError`` and its kin for bad input,
    ``IdNotFoundError``, ``ClosedError``, ``ReadOnlyError``, ``StorageError``); a call that
    raises changes nothing.
    """

    #: The shard class of this kind of collection (``engine.multivector`` uses runs of rows per record).
    _shard_class = Shard

    def __new__(cls, *args: Any, multivector: str | None = None, **kwargs: Any) -> "Collection":
        """``multivector="maxsim"`` makes a ``MultiVectorCollection`` (also when reopened: the option is
        stored with the index options)."""
        if multivector is not None and cls is Collection:
            from .multivector import MultiVectorCollection

            cls = MultiVectorCollection
        return super().__new__(cls)

    def __init__(self, name: str, dim: int, metric: str = "cosine", index: str = "flat", *,
                 backend: str | Backend | None = None, optimizer: Mapping[str, Any] | None = None,
                 planner: Mapping[str, Any] | None = None, metadata: Mapping[str, Any] | None = None,
                 text_fields: Any = None, sparse_fields: Any = None, text_options: Mapping[str, Any] | None = None,
                 payload_indexes: Mapping[str, str] | None = None, vectors_on_disk: bool = False,
                 multivector: None = None, _store: Any = None, _flush_rows: int | None = None,
                 **index_options: Any) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r}")
        self.metadata = check_collection_metadata(metadata)
        self.name = name
        self.dim = int(dim)
        self.metric = check_metric(metric)
        self.backend = get_backend(backend)
        self.index_spec = resolve_index_spec(index, self.dim, self.metric)
        self.index_options = dict(index_options)
        self._disk_walk: dict[str, Any] = {}
        #: An empty index of the collection's family: validates options now and search params per call.
        self._template = make_index(self.index_spec, self.dim, self.metric, **self._index_kwargs())
        self._disk_walk = disk_walk_options(vectors_on_disk, self._template)
        if self._disk_walk:
            self._template = make_index(self.index_spec, self.dim, self.metric, **self._index_kwargs())
        flush_rows = MEMORY_FLUSH_ROWS if _flush_rows is None else _flush_rows
        self.optimizer_config = OptimizerConfig.from_options(optimizer)
        self.planner_config = PlannerConfig.from_options(planner)
        self.lexical = LexicalConfig.from_options(text_fields, sparse_fields, text_options)
        self.payload_indexes = PayloadIndexConfig.from_options(payload_indexes)
        self.vectors_on_disk = check_vectors_on_disk(vectors_on_disk, self._template, durable=_store is not None)
        indexes = not self._template.EXACT or getattr(self._template, "REPLACES_SCAN", False)
        layout = ShardLayout(name, self.dim, self.metric, ExactSearcher(self.metric, self.backend), self._new_index,
                             indexes, max(1, int(getattr(self._template, "min_train_size", 1))), self.lexical,
                             self.payload_indexes)
        store = MemoryStore(self.config_doc()) if _store is None else (
            _store(self.config_doc()) if callable(_store) else _store)
        self._shard = self._shard_class(layout, store, flush_rows, self.optimizer_config, self.planner_config)

    def config_doc(self) -> dict[str, Any]:
        """What a manifest persists of the collection's creation options."""
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index_spec,
                "index_options": self.index_options, "optimizer": self.optimizer_config.to_dict(),
                "planner": self.planner_config.to_dict(), "metadata": self.metadata,
                **({"lexical": self.lexical.to_options()} if self.lexical is not None else {}),
                **({"payload_indexes": self.payload_indexes.to_options()} if self.payload_indexes is not None else {}),
                **({"vectors_on_disk": True} if self.vectors_on_disk else {})}

    def _index_kwargs(self) -> dict[str, Any]:
        return {**self.index_options, **self._disk_walk, "backend": self.backend}

    def _new_index(self) -> Index | None:
        # exact indices are a scan the segment does itself, unless they replace it (k-d tree)
        if not self._shard.layout.indexes:
            return None
        return make_index(self.index_spec, self.dim, self.metric, **self._index_kwargs())

    # ----------------------------------------------------------------- writes
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int:
        """Insert or replace whole records; returns how many were written.

        ``ids``: ints (signed 64-bit) or non-empty strings, unique within the call. ``vectors``:
        ``(n, dim)`` (or one ``(dim,)`` vector) of finite numbers. ``metadata``: one dict per id
        (or one dict for a single id): string keys, values str/int (64-bit)/float/bool/None/lists/
        dicts, at most 16 levels deep; keys are stored sorted. A record that exists is *replaced*:
        without ``metadata`` its payload becomes ``{}`` (use ``update`` or ``set_metadata`` to
        change part of a record). An empty batch writes nothing and returns 0.
        """
        if _is_empty(ids) and np.size(vectors) == 0:
            return 0
        ids_list, x, payloads = self._check_upsert(ids, vectors, metadata)
        self._shard.upsert(ids_list, x, payloads)
        return len(ids_list)

    def _check_upsert(self, ids: Any, vectors: Any, metadata: Any) -> tuple[list[Any], np.ndarray, list[dict[str, Any]]]:
        ids_list = check_ids(ids)
        x = as_matrix(vectors, self.dim)
        if len(ids_list) != x.shape[0]:
            raise InvalidArgumentError(f"got {len(ids_list)} ids for {x.shape[0]} vectors; lengths must match")
        check_unique(ids_list)
        return ids_list, prepare(x, self.metric), self._check_payloads(metadata, len(ids_list))

    def _check_payloads(self, metadata: Any, n: int) -> list[dict[str, Any]]:
        """One checked payload per record (``{}`` without metadata; one dict for a single record)."""
        if metadata is None:
            payloads = [{} for _ in range(n)]
        else:
            if isinstance(metadata, Mapping):
                metadata = [metadata]
            metadata = list(metadata)
            if len(metadata) != n:
                raise InvalidArgumentError(f"got {len(metadata)} metadata entries for {n} ids; lengths must match")
            payloads = [check_metadata(m, f"metadata[{i}]") for i, m in enumerate(metadata)]
        if self.lexical is not None:
            self.lexical.check_payloads(payloads)
        return payloads

    def delete(self, ids: Any = None, filter: Any = None) -> int:
        """Delete by ids and/or by filter (``filter={}``: everything); returns how many were deleted.

        Ids that do not exist are ignored (as in Chroma and Qdrant); with both, only the given ids
        that match the filter are deleted.
        """
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

    def search(self, queries: Any = None, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = DEFAULT_INCLUDE, explain: bool = False, *,
               score_threshold: float | None = None, group_by: str | None = None, group_size: int = 1,
               text: Any = None, sparse: Any = None, fusion: str = "rrf", fusion_params: Mapping[str, Any] | None = None
               ) -> QueryResult | list[QueryResult] | list[Group] | list[list[Group]]:
        """k nearest records per query, optionally among those matching ``filter``.

        A 1-D query returns one QueryResult; a 2-D batch returns a list. ``include``: any of
        ``"metadata"``, ``"distance"``, ``"vector"``. ``params``: per index family (see the class
        docstring). ``k`` is at most 16384 (``SHOAL_MAX_K``). ``explain=True`` attaches the plan of
        every segment to each result (``result.plan``). ``score_threshold`` keeps hits with
        score >= it. ``group_by=FIELD`` returns, per query, up to ``k`` ``Group``s (a distinct value
        and its best ``group_size`` hits) instead of hits (``engine.search_modes``). ``text`` (BM25 over
        the text fields) and ``sparse`` (sparse vectors) search alone or with ``queries``, fused by
        ``fusion`` ("rrf", "dbsf", "weighted"; ``engine.hybrid``); thresholds and grouping are for
        dense searches.
        """
        if text is not None or sparse is not None:
            if explain or group_by is not None or score_threshold is not None:
                raise InvalidArgumentError("explain, group_by and score_threshold cover dense searches only; "
                                           "drop text/sparse to use them")
            return hybrid_search(self, queries, k, filter, params, check_include(include, INCLUDE_FIELDS), text,
                                 sparse, fusion, fusion_params)
        if queries is None:
            raise InvalidArgumentError("search needs queries (vectors), text or sparse")
        if group_by is not None:
            return self._grouped_search(queries, k, filter, params, tuple(include), check_threshold(
                score_threshold, "score_threshold"), group_by, group_size)
        threshold = None if score_threshold is None else check_threshold(score_threshold, "score_threshold")
        single = (queries.ndim if isinstance(queries, np.ndarray) else np.ndim(queries)) == 1
        q = as_queries(queries, self.dim, normalize=self.metric == "cosine")
        k = check_k(k)
        node, key = _filter(filter)
        if include is not DEFAULT_INCLUDE:  # the default is valid: one-query calls skip the check
            include = check_include(include, INCLUDE_FIELDS)
        params = self._template.check_params(params)
        want_meta, want_vectors = "metadata" in include, "vector" in include
        shard = self._shard
        with shard.lock.read():
            shard.check_open()
            d, internal, plans = shard.search(q, k, node, key, params)
            rows = [self._result_row(d[i], internal[i], want_meta, want_vectors) for i in range(q.shape[0])]
        if threshold is not None:
            rows = [apply_threshold(r, threshold) for r in rows]
        if explain:
            described = [p.describe() for p in plans]
            for r in rows:
                r.plan = described
        return rows[0] if single else rows

    def explain(self, queries: Any, k: int = 10, filter: Any = None,
                params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The plan a search takes in every segment: path, reason, rows matched, params used."""
        result = self.search(queries, k, filter, params, include=(), explain=True)
        return (result if isinstance(result, QueryResult) else result[0]).plan

    def _result_row(self, d: np.ndarray, internal: np.ndarray, want_meta: bool, want_vectors: bool) -> QueryResult:
        if internal.size and internal[-1] < 0:  # fewer than k rows matched: padding (-1) is at the end
            found = int(np.count_nonzero(internal >= 0))
            d, internal = d[:found], internal[:found]
        ext, metadata, vectors = self._shard.records(internal, want_meta, want_vectors)
        return QueryResult(ext, d.astype(np.float32, copy=False),
                           scores_from_distances(d, self.metric).astype(np.float32, copy=False), metadata, vectors)

    def create_payload_index(self, field: str, kind: str) -> bool:
        """Index payload ``field`` as ``kind`` ("keyword" or "range", see ``engine.payload_index``) in
        every segment, durably; searches go on meanwhile. Returns False when it already was."""
        changed = create_payload_index(self._shard, field, kind)
        self.payload_indexes = self._shard.layout.payload_indexes
        return changed

    def drop_payload_index(self, field: str) -> None:
        """Stop indexing payload ``field`` (``PayloadIndexNotFoundError`` when it is not indexed)."""
        drop_payload_index(self._shard, field)
        self.payload_indexes = self._shard.layout.payload_indexes

    def describe(self) -> dict[str, Any]:
        """Name, shape, index configuration and storage state (segments, indexing, optimizer)."""
        with self._shard.lock.read():
            shard = self._shard.describe()
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index_spec,
                "index_options": dict(self.index_options), "metadata": dict(self.metadata), "count": len(self),
                "lexical": None if self.lexical is None else self.lexical.to_options(),
                "payload_indexes": None if self.payload_indexes is None else self.payload_indexes.to_options(),
                "vectors_on_disk": self.vectors_on_disk,
                "segments": len(shard["segments"]), "backend": self.backend.name, **{
                    k: v for k, v in shard.items() if k != "segments"}, "segment_list": shard["segments"]}

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_spec!r}, count={len(self)})"


#: Collection-level user metadata stays small: it lives in the manifest and travels in every describe().
MAX_COLLECTION_METADATA_BYTES = 16384


def check_collection_metadata(metadata: Any) -> dict[str, Any]:
    """Validate a collection's user metadata (a payload-like dict, at most 16 KiB as JSON)."""
    out = check_metadata(metadata, "collection metadata")
    size = len(json.dumps(out))
    if size > MAX_COLLECTION_METADATA_BYTES:
        raise InvalidArgumentError(f"collection metadata is {size} bytes as JSON; the most is "
                                   f"{MAX_COLLECTION_METADATA_BYTES}")
    return out


def _is_empty(ids: Any) -> bool:
    """An empty batch of ids (``upsert([], [])`` is a no-op, not a dimension error)."""
    return not isinstance(ids, (str, int, np.integer)) and hasattr(ids, "__len__") and len(ids) == 0


def config_difference(existing: Mapping[str, Any], dim: int, metric: str | None = None, index: str | None = None,
                      index_options: Mapping[str, Any] | None = None) -> str | None:
    """How a requested configuration differs from an existing collection's (``describe()``-shaped
    ``existing``), or None when it matches: dim, and the metric, index spec (``auto`` resolved) and
    index options that were given (None: not given). ``get_or_create_collection`` raises with this text."""
    wanted: dict[str, Any] = {"dim": int(dim)}
    if metric is not None:
        wanted["metric"] = check_metric(metric)
    if index is not None:
        wanted["index"] = resolve_index_spec(index, int(dim), wanted.get("metric", existing["metric"]))
    diffs = [f"{key}={existing[key]!r}, not {value!r}" for key, value in wanted.items() if existing[key] != value]
    stored = {**(existing.get("index_options") or {}), **(existing.get("lexical") or {}),
              "payload_indexes": existing.get("payload_indexes"), "vectors_on_disk": existing.get("vectors_on_disk")}
    diffs += [f"index option {key}={stored.get(key)!r}, not {value!r}"
              for key, value in (index_options or {}).items() if not _same_option(key, stored.get(key), value)]
    return "; ".join(diffs) or None


def _same_option(key: str, stored: Any, given: Any) -> bool:
    """A given option matches the stored one; for text/sparse fields, no fields equals an empty
    list, and ``text_options`` match when every key given has the stored value."""
    if key in ("text_fields", "sparse_fields"):
        return list(stored or []) == list(given or [])
    if key == "text_options":
        return all((stored or {}).get(k) == v for k, v in (given or {}).items())
    return stored == given
