"""A shard: segments, the id tracker, the lock, the store (log + files) and the optimizer.

The shard is the unit of storage and search (and the unit a cluster places).
One growing segment takes appends and is scanned exactly; at ``flush_rows`` it
is sealed (durably: written to files and the log checkpointed). The optimizer
merges sealed segments into large indexed ones in the background
(``engine.optimizer``); the planner picks each segment's path per search
(``engine.planner``). In memory and durable, the shard runs the same code; only
its store differs (``engine.stores``).

Writes take the write lock; searches share the read lock. What reaches the log
is already validated and its apply cannot fail (an append to the growing
segment), so every logged record replays.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..index.base import Index
from ..index.exact import ExactSearcher
from ..storage.segment_files import SegmentData
from ..storage.wal import OP_DELETE, OP_UPSERT, Record
from .errors import ClosedError, CollectionNotFoundError, CorruptionError, ShoalError, StorageError
from .filters import Node
from .id_tracker import ExternalId, IdTracker
from .lexical import LexicalConfig, attach_postings, merged_postings
from .locks import RWLock
from .metadata import MetadataStore
from .segment_ids import SegmentIds
from .payload_index import PayloadIndexConfig, attach_payload_indexes
from .optimizer import ADD_CHUNK, Merge, Optimizer, OptimizerConfig, choose_merge
from .planner import PlannerConfig, SegmentPlan, plan_segment, run_plans
from .segment import ROW_MASK, SLOT_BITS, Segment
from .small_arrays import all_same
from .stores import payload_indexes_of, rows_of


@dataclass(frozen=True)
class ShardLayout:
    """What every segment of a shard shares: shape, metric and how to make its index."""

    name: str
    dim: int
    metric: str
    exact: ExactSearcher
    new_index: Callable[[], Index | None]
    #: The family builds an index (Flat does not), and the fewest live rows it can be built on.
    indexes: bool
    min_index_rows: int
    #: Text and sparse fields with their inverted indexes per segment (``engine.lexical``), or None.
    lexical: LexicalConfig | None = None
    #: Declared payload indexes, built per sealed segment (``engine.payload_index``), or None.
    payload_indexes: PayloadIndexConfig | None = None


#: Up to this many internal ids are looked up one by one (``external_of``).


class _PhaseClock:
    """Seconds spent in each phase of a merge, written into a caller's dict."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.into[phase] = round(now - self.last, 3)
        self.last = now


class _Cancelled(Exception):
    """A merge stopped because the shard is closing."""


class Shard:
    def __init__(self, layout: ShardLayout, store: Any, flush_rows: int, optimizer: OptimizerConfig,
                 planner: PlannerConfig) -> None:
        self.layout = layout
        self.name = layout.name
        self.store = store
        self.flush_rows = flush_rows
        self.planner = planner
        self.lock = RWLock()
        self.tracker = IdTracker()
        self._next_slot = 0
        self.segments: list[Segment] = [self._new_segment()]
        self._by_slot: dict[int, Segment] = {self.segments[0].slot: self.segments[0]}
        self.optimizer = Optimizer(self, optimizer)
        self._closed: str | None = None
        #: Bumped by every applied write: ``engine.records`` rebuilds its id order when it changed.
        self.version = 0

    def _new_segment(self) -> Segment:
        seg = Segment(self._next_slot, self.layout.dim, self.layout.exact)
        attach_postings(seg, self.layout.lexical)
        attach_payload_indexes(seg, self.layout.payload_indexes)
        self._next_slot += 1
        return seg

    @property
    def growing(self) -> Segment:
        return self.segments[-1]

    def _install(self, segments: list[Segment]) -> None:
        self.segments = segments
        self._by_slot = {s.slot: s for s in segments}

    # ------------------------------------------------------------- open/replay
    def restore(self, stored: list[SegmentData], records: list[Record], repair: bool, wal_path: Path) -> int:
        """Install stored segments, then replay logged writes; returns the last sequence applied.

        A record that cannot be applied raises CorruptionError naming the collection,
        file and offset, unless ``repair`` skips it.
        """
        sealed = []
        self.tracker.reserve(sum(int(np.count_nonzero(data.live)) for data in stored))
        for data in stored:
            seg = Segment.restore(self._next_slot, self.layout.dim, self.layout.exact, data.vectors, data.norms,
                                  data.live, *rows_of(data), data.index)
            attach_postings(seg, self.layout.lexical, data.postings)
            attach_payload_indexes(seg, self.layout.payload_indexes, payload_indexes_of(data))
            self._next_slot += 1
            self._track(seg, seg.live_rows())
            sealed.append(seg)
        growing = self._new_segment()
        self._install(sealed + [growing])
        return self.replay(records, repair, wal_path)

    def replay(self, records: list[Record], repair: bool, wal_path: Path) -> int:
        """Apply logged writes in order (open, and a read-only follower catching up: ``engine.follower``);
        returns the last sequence applied (0: none)."""
        last = 0
        for rec in records:
            try:
                if rec.op == OP_UPSERT:
                    meta = rec.metadata if rec.metadata is not None else [{} for _ in rec.ids]
                    self._apply_upsert(rec.ids, rec.vectors, meta)
                elif rec.op == OP_DELETE:
                    self._apply_delete(self.tracker.internal_of(self.tracker.present(rec.ids), self.name))
                else:
                    raise ValueError(f"unknown operation {rec.op}")
            except (ShoalError, ValueError, TypeError) as exc:
                if not repair:
                    raise CorruptionError(f"collection {self.name!r}: {wal_path}: record at offset {rec.offset} "
                                          f"cannot be replayed ({exc}); open with repair=True to skip it") from None
            last = max(last, rec.seq)
        return last

    # ----------------------------------------------------------------- writes
    def check_open(self) -> None:
        if self._closed is not None:
            cls = CollectionNotFoundError if self._closed.startswith(("dropped", "renamed")) else ClosedError
            raise cls(f"collection {self.name!r} was {self._closed}; get it again from an open database")

    def upsert(self, ids: list[ExternalId], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        self.optimizer.wait_for_room()
        with self.lock.write():
            self.check_open()
            self.store.log_upsert(ids, x, payloads)  # durable before it is applied/acknowledged
            self._apply_upsert(ids, x, payloads)
            if self.growing.n >= self.flush_rows:
                self._seal_quietly()

    def _apply_upsert(self, ids: list[ExternalId], x: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """Apply a validated upsert (replay comes through here too): supersede old rows, append."""
        self.version += 1
        old = self.tracker.lookup(ids)
        old = old[old >= 0]
        if old.size:
            self._delete_internal(old)
        internal = self.growing.append(x, ids, payloads)
        self.tracker.assign(ids, internal)

    def delete(self, ids: list[ExternalId] | None, node: Node | None, filter_key: str | None) -> int:
        with self.lock.write():
            self.check_open()
            internal = self._select(ids, node, filter_key)
            if internal.size:
                self.store.log_delete(self.external_of(internal))
                self._apply_delete(internal)
            return int(internal.size)

    def rewrite(self, ids: list[ExternalId] | None, node: Node | None, filter_key: str | None,
                change: Callable[[np.ndarray, list[dict[str, Any]]], tuple[np.ndarray, list[dict[str, Any]]]],
                strict: bool) -> int:
        """Read-modify-write of stored records (partial updates): under the write lock, ``change``
        maps the selected records' ``(vectors, payloads)`` to new ones, which go through the logged
        upsert path, so the result is durable and replays like any upsert. ``strict``: every id
        must exist (IdNotFoundError naming them, nothing changed); otherwise missing ids are skipped.
        Returns how many records were written."""
        self.optimizer.wait_for_room()
        with self.lock.write():
            self.check_open()
            if strict and ids is not None and node is None:
                internal = self.tracker.internal_of(ids, f"collection {self.name!r}")
            else:
                internal = self._select(ids, node, filter_key)
            if not internal.size:
                return 0
            ext, payloads, vectors = self._rewrite_inputs(internal)
            x, new_payloads = change(vectors, payloads)  # may raise: nothing is logged yet
            self.store.log_upsert(ext, x, new_payloads)
            self._apply_upsert(ext, x, new_payloads)
            if self.growing.n >= self.flush_rows:
                self._seal_quietly()
            return int(internal.size)  # records (a multi-vector record is several rows)

    def _rewrite_inputs(self, internal: np.ndarray) -> tuple[list[ExternalId], list[dict[str, Any]], np.ndarray]:
        """What ``rewrite`` hands to its change: ids, payloads and vectors of the rows of ``internal``."""
        ids, payloads, vectors = self.records(internal, True, True)
        return ids, payloads, vectors

    def _track(self, seg: Segment, rows: np.ndarray) -> None:
        """Point the tracker at the records of a segment's live ``rows`` (opening it, or a merge)."""
        self.tracker.assign_rows(seg.ids, rows, seg.base)

    def _select(self, ids: list[ExternalId] | None, node: Node | None, filter_key: str | None) -> np.ndarray:
        """Internal ids of the live records among ``ids`` (missing ones are skipped) matching the filter."""
        if ids is not None:
            internal = np.unique(self.tracker.internal_of(self.tracker.present(ids), f"collection {self.name!r}"))
            if node is None:
                return internal
            keep = np.zeros(internal.size, bool)
            for seg, pos, rows in self._locate(internal):
                mask, _ = seg.match(node, filter_key)
                keep[pos] = True if mask is None else mask[rows]
            return internal[keep]
        parts = []
        for seg in self.segments:
            mask, count = seg.match(node, filter_key)
            if count:
                parts.append((seg.live_rows() if mask is None else np.flatnonzero(mask)) + seg.base)
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _apply_delete(self, internal: np.ndarray) -> None:
        self.version += 1
        self.tracker.forget(self.external_of(internal))
        self._delete_internal(internal)

    def _delete_internal(self, internal: np.ndarray) -> None:
        for seg, _, rows in self._locate(internal):
            seg.delete(rows)

    # ------------------------------------------------------------------ seal
    def _seal_quietly(self) -> None:
        """Seal at the size threshold; a failure (full disk) leaves the write applied and durable
        in the log, so the upsert that triggered it still succeeds, and a later one retries."""
        try:
            self._seal()
        except StorageError as exc:
            self.optimizer.last_error = f"seal failed: {type(exc).__name__}: {exc}"

    def _seal(self) -> None:
        """Growing segment -> sealed (caller holds the write lock)."""
        seg = self.growing
        self.store.seal(seg, self.segments)
        if seg.n:
            fresh = self._new_segment()
            self._install(self.segments + [fresh])
            self.optimizer.wake()

    def flush(self) -> None:
        with self.lock.write():
            self.check_open()
            self._seal()

    def unindexed_rows(self) -> int:
        if not self.layout.indexes:
            return 0
        return sum(s.live_count for s in self.segments if s.sealed and not s.indexed)

    # ----------------------------------------------------------------- merges
    def plan_merge(self, vacuum_threshold: float | None = None) -> Merge | None:
        """The optimizer's next merge (``vacuum_threshold`` overrides the config's, see ``choose_merge``)."""
        if self.store.read_only or self._closed is not None:
            return None
        with self.lock.read():
            return choose_merge(self.segments, self.optimizer.config, self.layout.indexes,
                                self.layout.min_index_rows, vacuum_threshold)

    def run_merge(self, merge: Merge, seconds: dict[str, float]) -> bool:
        """Build the merged segment outside the lock, then swap it in (see engine.optimizer).

        ``seconds`` receives the time of each phase (copy, index, write, swap) for ``describe()``.
        """
        clock = _PhaseClock(seconds)
        with self.lock.read():
            self.check_open()
            parts = self._merge_inputs(merge)
        try:
            clock.lap("copy")
            merged, taken = self._build_merged(merge, *parts)
            clock.lap("index")
            if merged.n:
                self.store.write_merged(merged)
            clock.lap("write")
            with self.lock.write():
                self.check_open()
                self._swap_in(merge, merged, taken)
            clock.lap("swap")
        except _Cancelled:
            self.store.abandon_merge()
            return False
        except BaseException:
            self.store.abandon_merge()
            raise
        return True

    def _merge_inputs(self, merge: Merge) -> tuple[Any, ...]:
        """Under the read lock: what the merge copies (rows live now, their vectors, ids, payloads)."""
        base = merge.base
        taken = [s.live_rows() for s in merge.sources]
        vectors = [np.asarray(s.vectors[rows]) for s, rows in zip(merge.sources, taken)]
        ids, payloads = SegmentIds(), MetadataStore()
        for s, rows in zip(merge.sources, taken):
            ids.extend(s.ids.take(rows))
            payloads.extend(s.meta.take(rows))
        if base is None:  # a fresh segment: its slot is taken now (merges run one at a time)
            slot = self._next_slot
            self._next_slot += 1
            return slot, taken, vectors, ids, payloads
        kept = (base.live[: base.n].copy(), np.asarray(base.vectors[: base.n]), np.asarray(base.norms[: base.n]),
                base.ids.take(np.arange(base.n)), base.meta.take(np.arange(base.n)),
                base.index.copy() if base.index is not None else None)
        return kept, taken, vectors, ids, payloads

    def _build_merged(self, merge: Merge, kept: Any, taken: list[np.ndarray], vectors: list[np.ndarray],
                      ids: SegmentIds, payloads: MetadataStore) -> tuple[Segment, list[np.ndarray]]:
        """Outside the lock: the merged segment with its index; returns it and the rows it took per source.

        ``kept`` is the base's rows and index copy, or the slot of a fresh segment."""
        dim = self.layout.dim
        new = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        vectors.clear()  # the sources' copies go now: a merge holds at most two copies of its rows at once
        if isinstance(kept, int):
            seg = Segment(kept, dim, self.layout.exact)
            index, first_new = self.layout.new_index(), 0
            seg.reserve(new.shape[0])
        else:
            live, base_vectors, base_norms, base_ids, base_payloads, index = kept
            seg = Segment(merge.base.slot, dim, self.layout.exact)
            seg.reserve(base_vectors.shape[0] + new.shape[0])
            seg.append(base_vectors, base_ids, base_payloads, base_norms)
            dead = np.flatnonzero(~live)
            seg.live[dead] = False
            seg.live_count -= int(dead.size)
            first_new = seg.n
        seg.append(new, ids, payloads)
        del new
        attach_payload_indexes(seg, self.layout.payload_indexes)  # built when the merged segment is sealed
        if self.layout.lexical is not None:  # the sources' postings remapped, not re-tokenised
            seg.postings = merged_postings(self.layout.lexical, merge.base, merge.sources, taken, seg.n)
        if index is not None:
            rows = np.arange(first_new, seg.n, dtype=np.int64)
            if not index.is_trained and seg.live_count >= self.layout.min_index_rows:
                index.train(seg.vectors[seg.live_rows()])
            if index.is_trained:
                index.reserve(seg.n)
                for start in range(0, rows.size, ADD_CHUNK):
                    if self.optimizer.stopping:
                        raise _Cancelled()
                    chunk = rows[start:start + ADD_CHUNK]
                    index.add(seg.vectors[chunk], chunk)
                index.finish_adds()
                seg.index = index
        return seg, taken

    def _swap_in(self, merge: Merge, merged: Segment, taken: list[np.ndarray]) -> None:
        """Under the write lock: re-apply deletes made during the build, move ids, commit."""
        base = merge.base
        killed = []
        offset = 0
        if base is not None:
            killed.append(np.flatnonzero(merged.live[: base.n] & ~base.live[: base.n]))
            offset = base.n
        moved_rows = []
        for src, rows in zip(merge.sources, taken):
            span = np.arange(offset, offset + rows.size, dtype=np.int64)
            gone = ~src.live[rows]
            killed.append(span[gone])
            moved_rows.append(span[~gone])
            offset += rows.size
        merged.delete(np.concatenate(killed) if killed else np.zeros(0, np.int64))
        moved = np.concatenate(moved_rows) if moved_rows else np.zeros(0, np.int64)
        moved = moved[merged.live[moved]]
        self._track(merged, moved)
        replaced = {id(s) for s in merge.sources} | ({id(base)} if base is not None else set())
        segments, placed = [], False
        for seg in self.segments:
            if id(seg) not in replaced:
                segments.append(seg)
            elif not placed:
                placed = True
                if merged.live_count:
                    segments.append(merged)
        sealed = [s for s in segments if s.sealed]
        self.store.commit(sealed)
        self._install(segments)

    def compact(self) -> bool:
        """Seal, then rebuild every segment holding deleted rows and merge; returns whether anything changed."""
        self.flush()
        changed = False
        with self.optimizer.merging:
            while True:
                self.check_open()
                merge = self.plan_merge(vacuum_threshold=0.0)
                if merge is None or not self.optimizer.run(merge):
                    return changed
                changed = True

    def optimize(self, wait: bool = True) -> None:
        """Seal the growing segment and merge until the policy is satisfied (``wait``), or wake the optimizer."""
        self.flush()
        if not wait:
            self.optimizer.wake()
            return
        while self.optimizer.step():
            self.check_open()

    # ------------------------------------------------------------------ reads
    def _locate(self, internal: np.ndarray) -> list[tuple[Segment, np.ndarray | slice, np.ndarray]]:
        """Group internal ids by segment: ``(segment, positions in input, rows)``; the positions
        are ``slice(None)`` when every id is in one segment."""
        slots = internal >> SLOT_BITS
        rows = internal & ROW_MASK
        if internal.size and all_same(slots):  # positions: all of them, in order
            return [(self._by_slot[int(slots[0])], slice(None), rows)]
        out = []
        for slot in np.unique(slots).tolist():
            pos = np.flatnonzero(slots == slot)
            out.append((self._by_slot[slot], pos, rows[pos]))
        return out

    def external_of(self, internal: np.ndarray) -> list[ExternalId]:
        return self.records(internal, False, False)[0]

    def records(self, internal: np.ndarray, want_meta: bool, want_vectors: bool
                ) -> tuple[list[ExternalId], list[dict[str, Any]] | None, np.ndarray | None]:
        """Ids, payload copies and vectors of internal ids (caller holds the read lock): one
        batch per segment, so a search's hits cost a few numpy gathers, not a loop per row."""
        groups = self._locate(internal)
        vectors = np.zeros((internal.size, self.layout.dim), np.float32) if want_vectors else None
        if vectors is not None:
            for seg, pos, rows in groups:
                vectors[pos] = seg.vectors[rows]
        if len(groups) == 1:
            seg, _, rows = groups[0]
            return seg.ids.values(rows), seg.meta.payloads(rows) if want_meta else None, vectors
        ext: list[Any] = [None] * internal.size
        meta: list[Any] | None = [None] * internal.size if want_meta else None
        for seg, pos, rows in groups:
            for p, e in zip(pos.tolist(), seg.ids.values(rows)):
                ext[p] = e
            if meta is not None:
                for p, payload in zip(pos.tolist(), seg.meta.payloads(rows)):
                    meta[p] = payload
        return ext, meta, vectors

    def count(self, node: Node | None, filter_key: str | None) -> int:
        if node is None:
            return len(self.tracker)
        return sum(seg.match(node, filter_key)[1] for seg in self.segments)

    def search(self, q: np.ndarray, k: int, node: Node | None, filter_key: str | None,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[SegmentPlan]]:
        """Top-k ``(distances, internal ids)`` over all segments, merged once by (distance, id)."""
        plans = [plan_segment(seg, k, node, filter_key, params, self.planner) for seg in self.segments if seg.n]
        parts = run_plans(self._by_slot, q, k, plans)
        if not parts:
            return np.full((q.shape[0], k), np.inf, np.float32), np.full((q.shape[0], k), -1, np.int64), plans
        if len(parts) == 1:
            return parts[0][0], parts[0][1], plans
        d = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        tie = np.where(ids < 0, np.iinfo(np.int64).max, ids)
        order = np.lexsort((tie, d), axis=1)[:, :k]
        return np.take_along_axis(d, order, 1), np.take_along_axis(ids, order, 1), plans

    def describe(self) -> dict[str, Any]:
        segs = [{"segment": s.slot, "rows": s.n, "live": s.live_count,
                 "state": "growing" if not s.sealed else ("indexed" if s.indexed else "sealed")}
                for s in self.segments]
        indexed = sum(s.live_count for s in self.segments if s.indexed)
        return {"segments": segs, "indexed_rows": indexed, "unindexed_rows": len(self.tracker) - indexed,
                "optimizer": self.optimizer.state(), "planner": self.planner.to_dict(), "flush_rows": self.flush_rows}

    # ------------------------------------------------------------ lifecycle
    def snapshot(self, dest: Path) -> None:
        with self.lock.read():
            self.check_open()
            self.store.snapshot(dest, self.segments)

    def close(self, flush: bool, why: str = "closed") -> None:
        """Stop the optimizer, seal what changed and release the store; later calls raise ClosedError.

        A failed seal (full disk) leaves the shard open, so close() can be retried.
        """
        if self._closed is not None:
            return
        self.optimizer.stop()
        with self.lock.write():
            self.store.close(self.segments, flush)
            self._closed = why
