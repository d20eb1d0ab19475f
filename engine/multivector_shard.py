"""The shard of a multi-vector collection: a record is a run of consecutive rows.

A record with m vectors is written as m rows in one append, every row carrying the record's
external id and payload. So the row store, the log, the segment files, the index (over all stored
vectors), filters, merges and snapshots work unchanged; what changes is the record layer:

- the id tracker maps a record's id to the internal id of its first row (its *head*);
- a run ends at the next row whose id differs or that is dead (deletes and supersedes kill a whole
  run, and one batch never holds an id twice, so two live neighbours with equal ids are one record);
- deletes, counts and selections work on heads; a record's vectors are its run of rows.

No file format changes: the runs are derived from a segment's ids (``RecordRuns``) and cached per
segment until it grows. Payloads are columnar and dictionary-coded, so repeating one per row costs
a few bytes a row, and it is what makes every row-level filter mask a record-level one.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .filters import Node
from .id_tracker import ExternalId
from .segment import Segment
from .segment_ids import DEAD, OTHER, SegmentIds
from .shard import Shard


class RecordRuns:
    """Which rows of a segment start a record (``head``), the head of every live row, run ends."""

    def __init__(self, ids: SegmentIds, n: int) -> None:
        kind, value = ids.kind[:n], np.asarray(ids.value[:n])
        live = kind != DEAD
        same = np.zeros(n, bool)
        same[1:] = live[1:] & (kind[1:] == kind[:-1]) & (value[1:] == value[:-1])
        for r in np.flatnonzero(same & (kind == OTHER)).tolist():  # string ids: compare the ids
            same[r] = ids.others[r] == ids.others[r - 1]
        self.n = n
        self.head = live & ~same
        rows = np.arange(n, dtype=np.int64)
        #: For a live row, the first row of its record.
        self.head_of = np.maximum.accumulate(np.where(self.head, rows, 0)) if n else rows
        bounds = np.append(np.flatnonzero(self.head | ~live), n)
        self._bounds = bounds

    def ends(self, heads: np.ndarray) -> np.ndarray:
        """One past the last row of the records starting at ``heads``."""
        return self._bounds[np.searchsorted(self._bounds, heads, side="right")]


def _record_starts(ids: list[ExternalId]) -> list[int]:
    """Positions where a new record starts in a row batch (a record's rows share its id)."""
    return [i for i, e in enumerate(ids) if i == 0 or type(e) is not type(ids[i - 1]) or e != ids[i - 1]]


class MultiVectorShard(Shard):
    """``Shard`` whose records are runs of rows (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runs: weakref.WeakKeyDictionary[Segment, RecordRuns] = weakref.WeakKeyDictionary()
        super().__init__(*args, **kwargs)

    def runs(self, seg: Segment) -> RecordRuns:
        """The segment's record runs (recomputed only after it grew; deletes kill whole runs, so
        they never move a live row's head)."""
        runs = self._runs.get(seg)
        if runs is None or runs.n != seg.n:
            runs = self._runs[seg] = RecordRuns(seg.ids, seg.n)
        return runs

    # ----------------------------------------------------------- record rows
    def heads_of(self, internal: np.ndarray) -> np.ndarray:
        """Internal ids of the records holding rows ``internal`` (live rows, -1 padding skipped; sorted, unique)."""
        internal = internal[internal >= 0]
        if not internal.size:
            return np.zeros(0, np.int64)
        parts = [self.runs(seg).head_of[rows] + seg.base for seg, _, rows in self._locate(np.unique(internal))]
        return np.unique(np.concatenate(parts))

    def matching_heads(self, node: Node | None, filter_key: str | None) -> np.ndarray:
        """Internal ids of every live record passing the filter (one mask per segment, no sort)."""
        parts = []
        for seg in self.segments:
            mask, count = seg.match(node, filter_key)
            if count:
                head = self.runs(seg).head
                parts.append(np.flatnonzero(head if mask is None else head & mask) + seg.base)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def spans(self, heads: np.ndarray) -> list[tuple[Segment, np.ndarray | slice, np.ndarray, np.ndarray]]:
        """Per segment: ``(segment, positions in heads, first rows, end rows)`` of the records."""
        return [(seg, pos, rows, self.runs(seg).ends(rows)) for seg, pos, rows in self._locate(heads)]

    def record_rows(self, heads: np.ndarray) -> np.ndarray:
        """Internal ids of every row of the records ``heads``, record after record."""
        if not heads.size:
            return np.zeros(0, np.int64)
        lengths = np.zeros(heads.size, np.int64)
        starts = np.zeros(heads.size, np.int64)
        for seg, pos, first, end in self.spans(heads):
            lengths[pos], starts[pos] = end - first, first + seg.base
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return offsets + np.arange(int(lengths.sum()), dtype=np.int64)

    def record_vectors(self, heads: np.ndarray) -> list[np.ndarray]:
        """Each record's vectors, an ``(m, dim)`` copy per record."""
        out: list[Any] = [None] * heads.size
        for seg, pos, first, end in self.spans(heads):
            where = range(heads.size)[pos] if isinstance(pos, slice) else pos.tolist()
            for p, a, b in zip(where, first.tolist(), end.tolist()):
                out[p] = np.array(seg.vectors[a:b])
        return out

    # ---------------------------------------------------------------- hooks
    def _track(self, seg: Segment, rows: np.ndarray) -> None:
        super()._track(seg, rows[self.runs(seg).head[rows]])

    def _apply_upsert(self, ids: list[ExternalId], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """Rows of whole records (replay comes through here too): supersede the old runs, append."""
        self.version += 1
        starts = _record_starts(ids)
        record_ids = [ids[i] for i in starts]
        old = self.tracker.lookup(record_ids)
        old = old[old >= 0]
        if old.size:
            self._delete_internal(old)
        internal = self.growing.append(x, ids, payloads)
        self.tracker.assign(record_ids, internal[starts])

    def _delete_internal(self, internal: np.ndarray) -> None:
        super()._delete_internal(self.record_rows(internal))

    def _select(self, ids: list[ExternalId] | None, node: Node | None, filter_key: str | None) -> np.ndarray:
        return self.heads_of(super()._select(ids, node, filter_key))

    def _rewrite_inputs(self, internal: np.ndarray) -> tuple[list[Any], list[dict[str, Any]], np.ndarray]:
        ext, payloads, vectors = Shard.records(self, self.record_rows(internal), True, True)
        return ext, payloads, vectors

    def count(self, node: Node | None, filter_key: str | None) -> int:
        return len(self.tracker) if node is None else int(self.matching_heads(node, filter_key).size)

    def records(self, internal: np.ndarray, want_meta: bool, want_vectors: bool
                ) -> tuple[list[ExternalId], list[dict[str, Any]] | None, list[np.ndarray] | None]:
        """As ``Shard.records`` for records (heads); vectors are one ``(m, dim)`` array per record."""
        ext, meta, _ = super().records(internal, want_meta, False)
        return ext, meta, self.record_vectors(internal) if want_vectors else None
