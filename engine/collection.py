"""Collection: the embedded API over segments (upsert, get, delete, count, search).

Writes take the collection's write lock; searches share the read lock. Every
call validates all of its input before it changes anything, so a rejected
call leaves the collection exactly as it was.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..index.base import Index
from ..index.exact import ExactSearcher
from ..index.factory import make_index
from .backend import Backend, get_backend
from .errors import IdNotFoundError, InvalidArgumentError
from .filters import Node, compile_filter
from .ids import ExternalId, check_ids, check_unique
from .locks import RWLock
from .threads import threads_for_batch
from .metadata import check_metadata
from .metrics import check_metric, prepare, scores_from_distances
from .results import GetResult, QueryResult
from .segment import Segment
from .validation import as_matrix, check_k

INCLUDE_FIELDS = ("metadata", "distance", "vector")


def resolve_index_spec(index: str, dim: int, metric: str = "l2") -> str:
    """Map a collection's ``index`` argument to a factory spec (``auto`` by dimension)."""
    if index.lower() == "auto":
        from ..index.factory import auto_spec

        return auto_spec(dim, metric)
    return index


class Collection:
    """A named set of (id, vector, metadata) records of one dimension and metric."""

    def __init__(self, name: str, dim: int, metric: str = "cosine", index: str = "flat", *,
                 backend: str | Backend | None = None, **index_options: Any) -> None:
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
        self._exact = ExactSearcher(self.metric, self.backend)
        self._lock = RWLock()
        self._id_to_internal: dict[ExternalId, int] = {}
        self._external: list[ExternalId | None] = []
        self.segments: list[Segment] = [self._new_segment(0)]
        #: Persistence (storage.collection_store.CollectionStore) of a durable database; None in memory.
        self._store: Any = None

    # --------------------------------------------------------------- plumbing
    def _index_kwargs(self) -> dict[str, Any]:
        return {**self.index_options, "backend": self.backend}

    def _new_index(self) -> Index | None:
        index = make_index(self.index_spec, self.dim, self.metric, **self._index_kwargs())
        # exact indices are a scan the segment does itself, unless they replace it (k-d tree)
        return None if index.EXACT and not getattr(index, "REPLACES_SCAN", False) else index

    def _new_segment(self, start: int) -> Segment:
        return Segment(start, self.dim, self.metric, self._exact, self._new_index)

    def _locate(self, internal: np.ndarray) -> list[tuple[Segment, np.ndarray, np.ndarray]]:
        """Group internal ids by segment: ``(segment, positions in input, rows)``."""
        out = []
        for seg in self.segments:
            sel = np.flatnonzero((internal >= seg.start) & (internal < seg.start + seg.n))
            if sel.size:
                out.append((seg, sel, internal[sel] - seg.start))
        return out

    def _internal_of(self, ids: list[ExternalId]) -> np.ndarray:
        missing = [i for i in ids if i not in self._id_to_internal]
        if missing:
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise IdNotFoundError(f"ids not found in collection {self.name!r}: {missing[:10]}{more}")
        return np.fromiter((self._id_to_internal[i] for i in ids), np.int64, len(ids))

    @property
    def growing(self) -> Segment:
        return self.segments[-1]

    # ----------------------------------------------------------------- writes
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int:
        """Insert or replace records; returns how many were written."""
        ids_list, x, payloads = self._check_upsert(ids, vectors, metadata)
        with self._lock.write():
            if self._store is not None:
                self._store.log_upsert(ids_list, x, payloads)  # durable before it is applied/acknowledged
            self._apply_upsert(ids_list, x, payloads)
            if self._store is not None:
                self._store.after_write()
        self._maybe_compact()
        return len(ids_list)

    def _check_upsert(self, ids: Any, vectors: Any, metadata: Any
                      ) -> tuple[list[ExternalId], np.ndarray, list[dict[str, Any]]]:
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
        return ids_list, prepare(x, self.metric), payloads

    def _apply_upsert(self, ids: list[ExternalId], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """Apply a validated upsert (the storage layer replays its log through here)."""
        old = [self._id_to_internal[i] for i in ids if i in self._id_to_internal]
        if old:
            self._delete_internal(np.asarray(old, np.int64))
        seg = self.growing
        rows = seg.append(x, payloads)
        internal = (rows + seg.start).tolist()
        self._external.extend(ids)
        self._id_to_internal.update(zip(ids, internal))

    def delete(self, ids: Any = None, filter: Any = None) -> int:
        """Delete by ids (all must exist) and/or by filter; returns how many were deleted."""
        if ids is None and filter is None:
            raise InvalidArgumentError("delete needs ids or a filter (use filter={} to delete everything)")
        ids_list = None if ids is None else check_ids(ids)
        node = None if filter is None else compile_filter(filter)
        with self._lock.write():
            internal = self._select_for_delete(ids_list, node)
            if self._store is not None and internal.size:
                self._store.log_delete([self._external[i] for i in internal.tolist()])
            self._apply_delete(internal)
        self._maybe_compact()
        return int(internal.size)

    def _select_for_delete(self, ids_list: list[ExternalId] | None, node: Node | None) -> np.ndarray:
        if ids_list is not None:
            internal = np.unique(self._internal_of(ids_list))
            if node is not None:
                keep = np.zeros(internal.size, bool)
                for seg, pos, rows in self._locate(internal):
                    keep[pos] = seg.match_mask(node)[rows]
                internal = internal[keep]
            return internal
        return np.concatenate([np.flatnonzero(seg.match_mask(node)) + seg.start for seg in self.segments])

    def _apply_delete(self, internal: np.ndarray) -> None:
        for i in internal.tolist():
            ext = self._external[i]
            self._external[i] = None
            del self._id_to_internal[ext]
        self._delete_internal(internal)

    def _delete_internal(self, internal: np.ndarray) -> None:
        for seg, _, rows in self._locate(internal):
            seg.delete(rows)

    # ------------------------------------------------------------ persistence
    def _maybe_compact(self) -> None:
        """Automatic compaction once a sealed segment's deleted fraction passes the threshold."""
        if self._store is not None and self._store.needs_compaction():
            self._store.compact(force=False)

    def compact(self) -> bool:
        """Drop deleted rows and rebuild the index; returns whether anything changed.

        Durable databases merge sealed segments while readers keep searching. In
        memory there is one segment and no sealed copy to search meanwhile, so the
        rebuild holds the write lock (calls wait); it runs only when asked.
        """
        if self._store is not None:
            return self._store.compact(force=True)
        with self._lock.write():
            return self._compact_in_memory()

    def _compact_in_memory(self) -> bool:
        (seg,) = self.segments
        if seg.live_count == seg.n:
            return False
        _, external, x, payloads = self._live_records([seg])
        self.segments = [self._segment_from(x, payloads)]
        self._external = external
        self._id_to_internal = {e: i for i, e in enumerate(external)}
        return True

    def _live_records(self, segments: list[Segment]
                      ) -> tuple[list[np.ndarray], list[ExternalId | None], np.ndarray, list[dict[str, Any]]]:
        """What compaction keeps of ``segments``: each one's live rows, then their ids, stored vectors and payloads."""
        taken = [np.flatnonzero(s.live[: s.n]) for s in segments]
        external = [self._external[s.start + r] for s, rows in zip(segments, taken) for r in rows.tolist()]
        x = np.concatenate([np.asarray(s.vectors[rows]) for s, rows in zip(segments, taken)])
        payloads = [dict(s.meta.rows[r]) for s, rows in zip(segments, taken) for r in rows.tolist()]
        return taken, external, x, payloads

    def _segment_from(self, x: np.ndarray, payloads: list[dict[str, Any]]) -> Segment:
        """A new segment (internal ids from 0) holding prepared vectors, its index built over them."""
        seg = self._new_segment(0)
        if x.shape[0]:
            seg.append(x, payloads)
        return seg

    def flush(self) -> None:
        """Seal the growing segment to disk and checkpoint the write-ahead log."""
        if self._store is not None:
            with self._lock.write():
                self._store.checkpoint()

    def snapshot(self, dest: str | os.PathLike) -> None:
        """Write a consistent copy of this collection to ``dest`` (a new directory)."""
        from ..storage.collection_store import write_snapshot

        if self._store is not None:
            self._store.snapshot(Path(dest))
        else:
            with self._lock.read():
                write_snapshot(self, Path(dest))

    # ------------------------------------------------------------------ reads
    def __len__(self) -> int:
        return len(self._id_to_internal)

    def count(self, filter: Any = None) -> int:
        """Number of records, or of those matching ``filter``."""
        node = None if filter is None else compile_filter(filter)
        with self._lock.read():
            if node is None:
                return len(self._id_to_internal)
            return int(sum(seg.match_mask(node).sum() for seg in self.segments))

    def get(self, ids: Any) -> GetResult:
        """Vectors and metadata for ids, in the order given; unknown ids raise IdNotFoundError."""
        ids_list = check_ids(ids)
        with self._lock.read():
            internal = self._internal_of(ids_list)
            vectors = np.zeros((len(ids_list), self.dim), np.float32)
            metadata: list[dict[str, Any]] = [{} for _ in ids_list]
            for seg, pos, rows in self._locate(internal):
                vectors[pos] = seg.vectors[rows]
                for p, r in zip(pos.tolist(), rows.tolist()):
                    metadata[p] = dict(seg.meta.rows[r])
        return GetResult(ids_list, vectors, metadata)

    def search(self, queries: Any, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = ("metadata", "distance")) -> QueryResult | list[QueryResult]:
        """k nearest records per query, optionally among those matching ``filter``.

        A 1-D query returns one QueryResult; a 2-D batch returns a list.
        """
        single = np.ndim(queries) == 1
        q = prepare(as_matrix(queries, self.dim, name="queries"), self.metric)
        k = check_k(k)
        node = None if filter is None else compile_filter(filter)
        include = tuple(include)
        bad = [f for f in include if f not in INCLUDE_FIELDS]
        if bad:
            raise InvalidArgumentError(f"unknown include field(s) {bad}; choose from {INCLUDE_FIELDS}")
        params = self._template.check_params(params)
        with self._lock.read(), threads_for_batch(q.shape[0]):
            d, internal = self._search_internal(q, k, node, params)
            results = [self._result_row(d[i], internal[i], include) for i in range(q.shape[0])]
        return results[0] if single else results

    def _search_internal(self, q: np.ndarray, k: int, node: Node | None,
                         params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Fan out over segments and merge top-k by (distance, internal id)."""
        parts = [seg.search(q, k, node, params) for seg in self.segments if seg.n]
        if not parts:
            return np.full((q.shape[0], k), np.inf, np.float32), np.full((q.shape[0], k), -1, np.int64)
        if len(parts) == 1:
            return parts[0]
        d = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        tie = np.where(ids < 0, np.iinfo(np.int64).max, ids)
        order = np.lexsort((tie, d), axis=1)[:, :k]
        return np.take_along_axis(d, order, 1), np.take_along_axis(ids, order, 1)

    def _result_row(self, d: np.ndarray, internal: np.ndarray, include: Sequence[str]) -> QueryResult:
        keep = internal >= 0
        d, internal = d[keep], internal[keep]
        ext = [self._external[i] for i in internal.tolist()]
        metadata = vectors = None
        if "metadata" in include or "vector" in include:
            located = self._locate(internal)
            if "metadata" in include:
                metadata = [{} for _ in ext]
                for seg, pos, rows in located:
                    for p, r in zip(pos.tolist(), rows.tolist()):
                        metadata[p] = dict(seg.meta.rows[r])
            if "vector" in include:
                vectors = np.zeros((len(ext), self.dim), np.float32)
                for seg, pos, rows in located:
                    vectors[pos] = seg.vectors[rows]
        return QueryResult(ext, d.astype(np.float32), scores_from_distances(d, self.metric).astype(np.float32),
                           metadata, vectors)

    def describe(self) -> dict[str, Any]:
        """Name, shape and index configuration, for listings and the service."""
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index_spec,
                "index_options": {k: v for k, v in self.index_options.items()}, "count": len(self),
                "segments": len(self.segments), "backend": self.backend.name}

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_spec!r}, count={len(self)})"
