"""Reading records without knowing their ids (get by filter, scroll, iter) and partial updates.

Order. Records listed without ids come in one total order of their external ids: integers
ascending, then strings by code point (``engine.ids.order_key``). A scroll cursor is the last id
a page returned, and the next page starts strictly after it, so the order does not depend on
where records are stored: while writes continue, a record present during the whole scroll is
returned exactly once (never twice, never skipped); records written meanwhile appear when
their id is still ahead of the cursor.

The id order is built from the id tracker (one sort, O(n log n)) and kept until the next
write (``Shard.version``), so a scroll over an unchanging collection sorts once.

Partial updates (``update``, ``set_metadata``, ``delete_metadata_keys``) read the current
record, merge, and write it back through the shard's logged upsert (``Shard.rewrite``): they
are durable, replay after a crash, and never touch segment internals.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError
from .filters import keyed_filter
from .ids import ExternalId, check_ids, check_unique, order_key
from .metadata import check_metadata
from .metrics import prepare
from .results import GetResult, Record, ScrollPage
from .validation import as_matrix

#: What ``get``/``scroll`` may return besides ids.
RECORD_FIELDS = ("metadata", "vector")
#: Largest page ``scroll`` serves in one call (a bound on one response's size).
MAX_PAGE = 65536
#: Candidates looked at per step of an ordered walk (vectorised filter check per step).
WALK_STEP = 1024
MAX_WALK_STEP = 65536
#: A filter matching at most 1/GATHER_BELOW of the records sorts its matches instead of walking all ids.
GATHER_BELOW = 8


class IdOrder:
    """The live external ids of a shard in ``order_key`` order: ints, then strings (two sorted lists)."""

    def __init__(self, ids: Iterable[ExternalId]) -> None:
        ints, strs = [], []
        for ext in ids:
            (strs if isinstance(ext, str) else ints).append(ext)
        ints.sort()
        strs.sort()
        self._parts = (ints, strs)

    def after(self, cursor: ExternalId | None, step: int = WALK_STEP) -> Iterator[list[ExternalId]]:
        """Chunks of ``step`` ids strictly after ``cursor`` (all ids when None), in order."""
        ints, strs = self._parts
        if cursor is None:
            starts = (0, 0)
        elif isinstance(cursor, str):
            starts = (len(ints), bisect.bisect_right(strs, cursor))
        else:
            starts = (bisect.bisect_right(ints, cursor), 0)
        for part, start in zip(self._parts, starts):
            for lo in range(start, len(part), step):
                yield part[lo:lo + step]


def id_order(shard: Any) -> IdOrder:
    """The shard's id order, rebuilt only after a write (caller holds the read lock)."""
    cached = getattr(shard, "_id_order", None)
    if cached is None or cached[0] != shard.version:
        cached = (shard.version, IdOrder(shard.tracker))
        shard._id_order = cached
    return cached[1]


def ordered_selection(shard: Any, node: Any, key: str | None, cursor: ExternalId | None, skip: int,
                      want: int | None) -> np.ndarray:
    """Internal ids of the matching records after ``cursor`` in id order, skipping ``skip`` and
    keeping at most ``want`` (None: all); caller holds the read lock."""
    masks = {}
    for seg in shard.segments:
        mask, count = seg.match(node, key)
        masks[seg.slot] = (mask, count)
    matched = sum(count for _, count in masks.values())
    if node is not None and matched * GATHER_BELOW <= len(shard.tracker):
        return _gathered(shard, masks, cursor, skip, want)
    out: list[np.ndarray] = []
    taken = 0
    tracker = shard.tracker
    # chunks sized so one is expected to hold the page (a filter keeping 10% walks 10x the page)
    expect = (skip + (want or len(tracker))) * len(tracker) / max(matched, 1)
    step = int(min(max(1.25 * expect, WALK_STEP), MAX_WALK_STEP))
    for chunk in id_order(shard).after(cursor, step):
        internal = tracker.lookup(chunk)
        if node is not None:
            keep = np.zeros(internal.size, bool)
            for seg, pos, rows in shard._locate(internal):
                mask, count = masks[seg.slot]
                keep[pos] = (count > 0) if mask is None else mask[rows]
            internal = internal[keep]
        if skip:
            dropped = min(skip, internal.size)
            internal, skip = internal[dropped:], skip - dropped
        if want is not None:
            internal = internal[: want - taken]
        out.append(internal)
        taken += internal.size
        if want is not None and taken >= want:
            break
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _gathered(shard: Any, masks: dict[int, Any], cursor: ExternalId | None, skip: int,
              want: int | None) -> np.ndarray:
    """``ordered_selection`` for a selective filter: sort the matching records alone by id instead of
    walking every id in order (the same result, in O(m log m) for m matches)."""
    parts = [np.flatnonzero(mask) + seg.base for seg in shard.segments
             for mask, count in [masks[seg.slot]] if count and mask is not None]
    internal = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    ext = shard.external_of(internal)
    after = None if cursor is None else order_key(cursor)
    first = {}  # a multi-vector record matches on each of its rows: keep its first
    for i, e in enumerate(ext):
        first.setdefault(e, i)
    ranked = sorted((order_key(e), i) for e, i in first.items() if after is None or order_key(e) > after)
    picked = [i for _, i in ranked[skip:None if want is None else skip + want]]
    return internal[np.asarray(picked, np.int64)] if picked else np.zeros(0, np.int64)


def check_include(include: Iterable[str], allowed: Sequence[str] = RECORD_FIELDS) -> tuple[str, ...]:
    if isinstance(include, str):
        include = (include,)
    include = tuple(include)
    bad = [f for f in include if f not in allowed]
    if bad:
        raise InvalidArgumentError(f"unknown include field(s) {bad}; choose from {tuple(allowed)}")
    return include


def check_count(value: Any, name: str, *, low: int = 0, high: int | None = None, none_ok: bool = False) -> int | None:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {shorten(value)}")
    return int(value)


def check_cursor(cursor: Any) -> ExternalId | None:
    if cursor is None:
        return None
    return check_ids([cursor], "cursor")[0]


def check_keys(keys: Any) -> list[str]:
    if isinstance(keys, str):
        keys = [keys]
    try:
        keys = list(keys)
    except TypeError:
        raise InvalidArgumentError(f"keys must be a list of field names, got {shorten(keys)}") from None
    bad = [k for k in keys if not isinstance(k, str) or not k]
    if bad:
        raise InvalidArgumentError(f"keys must be non-empty strings, got {shorten(bad[0])}")
    return keys


def check_selection(ids: Any, filter: Any, what: str) -> list[ExternalId] | None:
    if ids is None and filter is None:
        raise InvalidArgumentError(f"{what} needs ids or a filter (filter={{}} selects every record)")
    return None if ids is None else check_ids(ids)


def check_update(ids: Any, vectors: Any, metadata: Any, dim: int, metric: str
                 ) -> tuple[list[ExternalId], np.ndarray | None, list[dict[str, Any]] | None]:
    """``update``'s arguments validated: ``(ids, prepared vectors or None, payloads or None)``."""
    ids_list = check_ids(ids)
    check_unique(ids_list)
    if vectors is None and metadata is None:
        raise InvalidArgumentError("update needs vectors and/or metadata")
    x = None
    if vectors is not None:
        x = prepare(as_matrix(vectors, dim), metric)
        if x.shape[0] != len(ids_list):
            raise InvalidArgumentError(f"got {len(ids_list)} ids for {x.shape[0]} vectors; lengths must match")
    payloads = None
    if metadata is not None:
        if isinstance(metadata, Mapping):
            payloads = [check_metadata(metadata)] * len(ids_list)
        else:
            payloads = [check_metadata(m, f"metadata[{i}]") for i, m in enumerate(metadata)]
            if len(payloads) != len(ids_list):
                raise InvalidArgumentError(f"got {len(payloads)} metadata entries for {len(ids_list)} ids; "
                                           "lengths must match")
    return ids_list, x, payloads


#: How a partial update changes the selected records: ``(vectors, payloads) -> (vectors, payloads)``
#: (``Shard.rewrite``). Built from plain data, so a cluster replica rebuilds the same one from a log entry.
Change = Callable[[np.ndarray, list[dict[str, Any]]], tuple[np.ndarray, list[dict[str, Any]]]]


def replace_fields(x: np.ndarray | None, payloads: list[dict[str, Any]] | None) -> Change:
    """``update``: the given vectors and/or payloads replace the stored ones (in the order of the ids)."""
    def change(old_x: np.ndarray, old_payloads: list[dict[str, Any]]):
        return (old_x if x is None else x), (old_payloads if payloads is None else [dict(p) for p in payloads])
    return change


def merge_values(values: Mapping[str, Any]) -> Change:
    """``set_metadata``: ``values`` merged into every payload."""
    def change(x: np.ndarray, payloads: list[dict[str, Any]]):
        return x, [check_metadata({**p, **values}) for p in payloads]
    return change


def drop_keys(keys: Iterable[str]) -> Change:
    """``delete_metadata_keys``: the top-level ``keys`` removed from every payload."""
    drop = set(keys)

    def change(x: np.ndarray, payloads: list[dict[str, Any]]):
        return x, [{k: v for k, v in p.items() if k not in drop} for p in payloads]
    return change


def iter_records(scroll: Any, batch_size: int, filter: Any, include: Iterable[str]) -> Iterator[Record]:
    """Every record of a ``scroll`` method, page after page (``Collection.iter`` and ``RemoteCollection.iter``)."""
    cursor = None
    while True:
        page = scroll(filter, batch_size, cursor, include)
        yield from page.records
        cursor = page.next_cursor
        if cursor is None:
            return


class RecordAPI:
    """The record-level half of ``Collection``: get by ids or filter, scroll, iter, exists and
    partial updates. Uses the collection's ``_shard``, ``dim``, ``metric`` and ``name``."""

    _shard: Any
    dim: int
    metric: str
    name: str

    # ------------------------------------------------------------------ reads
    def get(self, ids: Any = None, *, filter: Any = None, limit: int | None = None, offset: int = 0,
            include: Iterable[str] = ("metadata", "vector"), missing: str = "raise") -> GetResult:
        """Records by ids, or every record matching ``filter`` (Chroma's ``get``).

        With ``ids``: the records in the order given; an unknown id raises IdNotFoundError naming
        up to 10 (``missing="skip"`` leaves them out instead); a ``filter`` keeps those matching.
        Without ids: the matching records (all when ``filter`` is None) in id order (ints ascending,
        then strings), after skipping ``offset``, at most ``limit``. ``include``: any of
        ``"metadata"``, ``"vector"`` (both by default); what is left out is None in the result.
        For large collections prefer ``scroll``, whose cursor stays correct while writes go on.
        """
        include = check_include(include)
        if missing not in ("raise", "skip"):
            raise InvalidArgumentError(f"missing must be 'raise' or 'skip', got {shorten(missing)}")
        limit = check_count(limit, "limit", none_ok=True)
        offset = check_count(offset, "offset")
        node, key = keyed_filter(filter)
        ids_list = None if ids is None else check_ids(ids)
        shard = self._shard
        with shard.lock.read():
            shard.check_open()
            if ids_list is None:
                internal = ordered_selection(shard, node, key, None, offset, limit)
            else:
                internal = self._by_ids(ids_list, node, key, missing == "skip", offset, limit)
            ext, metadata, vectors = shard.records(internal, "metadata" in include, "vector" in include)
        return GetResult(ext, vectors, metadata)

    def _by_ids(self, ids: list[ExternalId], node: Any, key: str | None, skip_missing: bool, offset: int,
                limit: int | None) -> np.ndarray:
        shard = self._shard
        present = shard.tracker.present(ids) if skip_missing else ids
        internal = shard.tracker.internal_of(present, f"collection {self.name!r}")
        if node is not None and internal.size:
            keep = np.zeros(internal.size, bool)
            for seg, pos, rows in shard._locate(internal):
                mask, count = seg.match(node, key)
                keep[pos] = (count > 0) if mask is None else mask[rows]
            internal = internal[keep]
        return internal[offset:] if limit is None else internal[offset:offset + limit]

    def scroll(self, filter: Any = None, limit: int = 100, cursor: Any = None,
               include: Iterable[str] = ("metadata",)) -> ScrollPage:
        """One page of the records matching ``filter``, in id order, after ``cursor``.

        Pass ``page.next_cursor`` to get the next page; it is None on the last page. The cursor is
        the last id returned, so the walk is stable while writes continue: no record present
        throughout is returned twice or skipped (see ``engine.records``). ``limit`` in [1, 65536].
        """
        include = check_include(include)
        limit = check_count(limit, "limit", low=1, high=MAX_PAGE)
        after = check_cursor(cursor)
        node, key = keyed_filter(filter)
        shard = self._shard
        with shard.lock.read():
            shard.check_open()
            internal = ordered_selection(shard, node, key, after, 0, limit + 1)
            more = internal.size > limit
            ext, metadata, vectors = shard.records(internal[:limit], "metadata" in include, "vector" in include)
        return ScrollPage(GetResult(ext, vectors, metadata), ext[-1] if more else None)

    def iter(self, batch_size: int = 256, filter: Any = None,
             include: Iterable[str] = ("metadata",)) -> Iterator[Record]:
        """Every record matching ``filter``, in id order, fetched ``batch_size`` at a time (``scroll``)."""
        return iter_records(self.scroll, batch_size, filter, include)

    def exists(self, ids: Any) -> list[bool]:
        """Whether each id is stored, in the order given."""
        ids_list = check_ids(ids)
        with self._shard.lock.read():
            self._shard.check_open()
            return [i in self._shard.tracker for i in ids_list]

    # ---------------------------------------------------------------- updates
    def update(self, ids: Any, *, vectors: Any = None, metadata: Any = None) -> int:
        """Change only what is given of existing records: their vectors, their metadata, or both.

        ``metadata`` replaces each record's payload (one dict for all, or one per id; use
        ``set_metadata`` to merge keys). Every id must exist: otherwise IdNotFoundError naming up
        to 10 and nothing changes. Returns how many records were updated.
        """
        ids_list, x, payloads = check_update(ids, vectors, metadata, self.dim, self.metric)
        if not ids_list:
            return 0
        return self._shard.rewrite(ids_list, None, None, replace_fields(x, payloads), strict=True)

    def set_metadata(self, ids: Any = None, filter: Any = None, *, values: Mapping[str, Any]) -> int:
        """Merge ``values`` into the payload of the records given by ``ids`` and/or ``filter``
        (keys in ``values`` overwrite, others stay). Missing ids are skipped; returns how many changed."""
        ids_list = check_selection(ids, filter, "set_metadata")
        values = check_metadata(values, "values")
        node, key = keyed_filter(filter)
        return self._shard.rewrite(ids_list, node, key, merge_values(values), strict=False)

    def delete_metadata_keys(self, ids: Any = None, filter: Any = None, *, keys: Iterable[str]) -> int:
        """Remove top-level ``keys`` from the payload of the records given by ``ids`` and/or ``filter``
        (absent keys are ignored). Missing ids are skipped; returns how many records were rewritten."""
        ids_list = check_selection(ids, filter, "delete_metadata_keys")
        drop = check_keys(keys)
        node, key = keyed_filter(filter)
        return self._shard.rewrite(ids_list, node, key, drop_keys(drop), strict=False)
