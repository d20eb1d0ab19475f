"""The optimizer: merges sealed segments into large indexed ones, in the background.

Policy (size-tiered, after Lucene's TieredMergePolicy and Qdrant's merge/vacuum/
indexing optimizers): segments under ``max_segment_rows``, segments without a
built index and segments whose deleted fraction passes ``vacuum_threshold`` are
candidates. A merge keeps the largest indexed candidate that still has room in
place (its rows, ids and graph are reused; the others' live rows are added to a
copy of its index) and takes the smaller ones, smallest first, while the result
stays within ``max_segment_rows``; with no such base, the small ones are merged
into a fresh segment; an unindexed or dead-heavy segment that no merge has room for
is rebuilt on its own. Each row therefore enters an index about once, so indexing
a collection costs about one build, and the segment count grows with
size / max_segment_rows, not with the number of flushes. A segment past the
vacuum threshold is rebuilt from its live rows.

The index is built outside the shard's lock (searches and writes go on); writes
and deletes made meanwhile are applied to the result when it is swapped in,
under the write lock, with one manifest commit (crash-safe: the new segment's
files are complete before the manifest names them; until then the old
segments are the durable state).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgumentError, ShoalError
from .heap import release_free_heap
from .segment import Segment

if TYPE_CHECKING:
    from .shard import Shard

log = logging.getLogger("shoal.optimizer")

#: Rows added to an index between checks of a stop request (close() waits at most one chunk).
ADD_CHUNK = 32768
#: Seconds the background thread waits after a failed merge (a full disk) before trying again.
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class OptimizerConfig:
    """Per-collection merge settings (``optimizer={...}`` at create time)."""

    #: Largest segment a merge produces, in rows. The default keeps 1M rows in one segment.
    max_segment_rows: int = 1 << 20
    #: Upserts wait while more rows than this sit in sealed segments not yet indexed
    #: (backpressure: ingest cannot outrun indexing by more than this).
    max_unindexed_rows: int = 1 << 18
    #: A sealed segment whose deleted fraction passes this is rebuilt without them.
    vacuum_threshold: float = 0.2
    #: Run merges on a background thread (False: only ``optimize()`` merges).
    background: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None, **defaults: Any) -> "OptimizerConfig":
        merged = {**defaults, **dict(options or {})}
        unknown = set(merged) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgumentError(f"unknown optimizer option(s) {sorted(unknown)}; "
                                       f"known: {sorted(cls.__dataclass_fields__)}")
        out = cls(**merged)
        for name in ("max_segment_rows", "max_unindexed_rows"):
            value = getattr(out, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidArgumentError(f"optimizer option {name} must be a positive integer, got {value!r}")
        v = out.vacuum_threshold
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise InvalidArgumentError(f"optimizer option vacuum_threshold must be in (0, 1], got {v!r}")
        if not isinstance(out.background, bool):
            raise InvalidArgumentError(f"optimizer option background must be true or false, got {out.background!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Merge:
    """One planned merge: ``base`` keeps its rows and index in place; ``sources`` join it."""

    base: Segment | None
    sources: list[Segment]

    @property
    def rows(self) -> int:
        return (self.base.n if self.base is not None else 0) + sum(s.live_count for s in self.sources)


def choose_merge(segments: list[Segment], config: OptimizerConfig, indexes: bool, min_index_rows: int,
                 vacuum_threshold: float | None = None) -> Merge | None:
    """The next merge for these segments, or None when they are as merged as the policy wants.

    ``indexes``: the collection's family builds an index (Flat does not);
    ``min_index_rows``: fewest live rows its index can be built on (trained families);
    ``vacuum_threshold``: overrides the config's (``compact()`` passes 0: drop every deleted row).
    """
    cap = config.max_segment_rows
    vacuum = config.vacuum_threshold if vacuum_threshold is None else vacuum_threshold
    sealed = [s for s in segments if s.sealed]
    dead_heavy = [s for s in sealed if s.n and (s.n - s.live_count) / s.n > vacuum]
    unindexed = [s for s in sealed if indexes and not s.indexed and s.live_count >= min_index_rows]
    open_ = [s for s in sealed if s.live_count < cap]
    pool = sorted({id(s): s for s in dead_heavy + unindexed + open_}.values(), key=lambda s: s.live_count)

    def fill(base: Segment | None) -> Merge:
        merge = Merge(base, [])
        for seg in pool:  # smallest first, while they fit
            if seg is base:
                continue
            if merge.rows + seg.live_count > cap:
                break
            merge.sources.append(seg)
        return merge

    def worthwhile(merge: Merge) -> bool:
        if merge.base is not None or len(merge.sources) != 1:
            return bool(merge.sources)
        (only,) = merge.sources  # a segment on its own: worth it to vacuum or to index it
        return only in dead_heavy or only in unindexed

    bases = [s for s in pool if s not in dead_heavy and (s.indexed or not indexes) and s.n <= cap]
    for base in sorted(bases, key=lambda s: s.n, reverse=True) + [None]:
        merge = fill(base)
        if worthwhile(merge):
            return merge
    stranded = unindexed + dead_heavy  # every merge with room for them was filled by smaller segments
    return Merge(None, [stranded[0]]) if stranded else None


class Optimizer:
    """The shard's background merge thread and its state (for ``describe()``)."""

    def __init__(self, shard: "Shard", config: OptimizerConfig) -> None:
        self.shard = shard
        self.config = config
        self._wake = threading.Condition()
        self._stop = threading.Event()
        #: One merge at a time (the background thread and ``optimize()`` share it).
        self.merging = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending = False
        self.merges_done = 0
        self.running: str | None = None
        self.last_error: str | None = None
        #: What the last completed merge took, per phase (copy, index, write, swap), in seconds.
        self.last_merge: dict[str, Any] | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """Ask for a look at the segments; starts the background thread if it is not running.

        The thread exits once nothing is left to merge, so an idle collection holds none.
        """
        with self._wake:
            self._pending = True
            if self.config.background and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name=f"shoal-optimizer {self.shard.name}",
                                                daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                self._pending = False
            try:
                did = self.step()
            except Exception as exc:  # a full disk, say: keep serving from the old segments, retry later
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("optimizer of %s: %s", self.shard.name, self.last_error,
                            exc_info=not isinstance(exc, ShoalError))
                self._stop.wait(RETRY_SECONDS)
                continue
            if not did:
                with self._wake:
                    if not self._pending:
                        self._thread = None
                        self._wake.notify_all()
                        return
        with self._wake:
            self._thread = None
            self._wake.notify_all()

    def step(self) -> bool:
        """Run one merge if the policy wants one; returns whether it did."""
        with self.merging:
            merge = self.shard.plan_merge()
            if merge is None or self._stop.is_set():
                return False
            return self.run(merge)

    def run(self, merge: Merge) -> bool:
        """Run a planned merge and record it (the caller holds ``merging``); False if it was cancelled."""
        what = f"{len(merge.sources) + (merge.base is not None)} segments ({merge.rows} rows)"
        self.running = f"merging {what}"
        seconds: dict[str, float] = {}
        try:
            done = self.shard.run_merge(merge, seconds)
        finally:
            self.running = None
        if done:
            release_free_heap()  # the merge's copies are gone; their pages go back too
            self.merges_done += 1
            self.last_error = None
            self.last_merge = {"merged": what, "seconds": seconds}
        with self._wake:
            self._wake.notify_all()
        return done

    def wait_for_room(self) -> None:
        """Backpressure: block an upsert while the unindexed backlog is over its bound."""
        if self._thread is None:
            return
        with self._wake:
            while (not self._stop.is_set() and self.last_error is None
                   and self.shard.unindexed_rows() > self.config.max_unindexed_rows):
                self._wake.notify_all()
                self._wake.wait(0.5)

    def stop(self) -> None:
        """Stop the thread; a merge in progress is abandoned at its next chunk (nothing half-done stays)."""
        self._stop.set()
        with self._wake:
            thread = self._thread
            self._wake.notify_all()
        if thread is not None:
            thread.join()

    def state(self) -> dict[str, Any]:
        return {"thread_running": self._thread is not None, "running": self.running, "merges_done": self.merges_done,
                "last_error": self.last_error, "last_merge": self.last_merge, **self.config.to_dict()}
