"""A segment: a run of a shard's rows with their vectors, payloads, external ids and index.

Rows are append-only and addressed by row number. A segment's internal ids are
``base + row`` where ``base = slot << SLOT_BITS``: every segment owns a disjoint
id range, so a merge that keeps a segment's rows in place (and its slot) moves
no ids, and the shard finds a row's segment from the id alone.

The growing segment takes appends and has no index (it is scanned exactly);
sealed segments take only deletes and get their index from the optimizer.
Vectors are stored as the index sees them (normalised for cosine), so the exact
path and the index agree on every distance.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..index.base import Index
from ..index.exact import ExactSearcher
from ..index.kernels.topk import sq_norms
from .errors import FailedPreconditionError
from .filters import Node
from .metadata import MetadataStore
from .payload_index import PayloadIndexConfig, PayloadIndexes, ensure_payload_indexes, indexed_rows
from .segment_ids import SegmentIds

SLOT_BITS = 32
#: The row part of an internal id (``internal & ROW_MASK``).
ROW_MASK = (1 << SLOT_BITS) - 1
#: Filter masks a sealed segment keeps (least recently used dropped first).
MASK_CACHE = 32


class Segment:
    """Rows ``[0, n)`` of one shard, internal ids ``base + row``."""

    def __init__(self, slot: int, dim: int, exact: ExactSearcher) -> None:
        self.slot = slot
        self.base = slot << SLOT_BITS
        self.dim = dim
        self.exact = exact
        self.vectors = np.zeros((0, dim), np.float32)
        self.norms = np.zeros(0, np.float32)
        self.live = np.zeros(0, bool)
        self.meta = MetadataStore()
        #: External id of each row (None once the row is deleted).
        self.ids = SegmentIds()
        self.index: Index | None = None
        #: Inverted indexes of the collection's text/sparse fields (``engine.lexical.SegmentPostings``).
        self.postings: Any = None
        #: The collection's declared payload indexes, and this segment's (built when sealed; ``engine.payload_index``).
        self.payload_config: PayloadIndexConfig | None = None
        self.payload_indexes: PayloadIndexes | None = None
        self.n = 0
        #: Live rows, kept up to date by append/delete so no search counts them.
        self.live_count = 0
        #: Sealed segments are immutable (memory-mapped when durable) and accept only deletes.
        self.sealed = False
        #: The store's record of this segment's files (None while in memory only).
        self.disk: dict[str, Any] | None = None
        self._version = 0  # bumped by every delete: cached masks of an older version are stale
        #: filter key -> [version, mask, count, matching rows (filled by the first exact scan)]
        self._masks: OrderedDict[str, list[Any]] = OrderedDict()

    @classmethod
    def restore(cls, slot: int, dim: int, exact: ExactSearcher, vectors: np.ndarray, norms: np.ndarray,
                live: np.ndarray, ids: SegmentIds, meta: MetadataStore, index: Index | None) -> "Segment":
        """A sealed segment from stored arrays."""
        seg = cls(slot, dim, exact)
        seg.vectors, seg.norms, seg.n = vectors, norms, vectors.shape[0]
        seg.live = np.array(live[: seg.n], bool)
        seg.live_count = int(seg.live.sum())
        seg.ids = ids
        seg.meta = meta
        seg.index = index
        if index is not None and index.is_trained:  # rows deleted after the index file was written
            dead = np.flatnonzero(~seg.live)
            dead = dead[index.contains(dead)]
            if dead.size:
                index.remove(dead)
        seg.sealed = True
        return seg

    def seal(self, vectors: np.ndarray | None = None, norms: np.ndarray | None = None) -> None:
        """Stop appends; swap in stored (memory-mapped) copies of the arrays when given."""
        n = self.n
        self.vectors = self.vectors[:n] if vectors is None else vectors
        self.norms = self.norms[:n] if norms is None else norms
        self.live = self.live[:n].copy()
        self.sealed = True
        if self.postings is not None:
            self.postings.freeze()
        ensure_payload_indexes(self)

    # ----------------------------------------------------------------- writes
    def append(self, x: np.ndarray, ids: list[Any] | SegmentIds, payloads: list[dict[str, Any]] | MetadataStore,
               norms: np.ndarray | None = None) -> np.ndarray:
        """Append prepared vectors (with their squared norms, when already known) and their payloads
        (dicts, or a store of as many rows: a merge's copy); returns their internal ids."""
        if self.sealed:
            raise FailedPreconditionError("a sealed segment accepts only deletes")
        rows = np.arange(self.n, self.n + x.shape[0], dtype=np.int64)
        self.reserve(self.n + x.shape[0])
        self.vectors[rows] = x
        self.norms[rows] = sq_norms(x) if norms is None else norms
        self.live[rows] = True
        self.payload_indexes = None  # built for the rows as sealed (see ensure_payload_indexes)
        if isinstance(payloads, MetadataStore):
            self.meta.extend(payloads)
        else:
            self.meta.append(payloads)
            if self.postings is not None:
                self.postings.append(payloads)
        self.ids.extend(ids)
        self.n += x.shape[0]
        self.live_count += x.shape[0]
        return rows + self.base

    def delete(self, rows: np.ndarray) -> None:
        """Tombstone rows (already dead ones are ignored); the index forgets them too."""
        rows = rows[self.live[rows]]
        if not rows.size:
            return
        self.live[rows] = False
        self.live_count -= int(rows.size)
        self._version += 1  # payloads stay: every reader masks rows with ``live``
        self.ids.kill(rows)
        if self.index is not None and self.index.is_trained:
            present = rows[self.index.contains(rows)]
            if present.size:
                self.index.remove(present)

    def reserve(self, n: int) -> None:
        """Room for ``n`` rows (capacity doubles, so appends cost amortised O(1) per row)."""
        cap = self.vectors.shape[0]
        if n <= cap:
            return
        cap = max(n, 2 * cap, 256)
        for name in ("vectors", "norms", "live"):
            old = getattr(self, name)
            new = np.zeros((cap,) + old.shape[1:], old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    # ------------------------------------------------------------------ reads
    @property
    def indexed(self) -> bool:
        return self.index is not None and self.index.is_trained

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.live[: self.n])

    def match(self, node: Node | None, key: str | None) -> tuple[np.ndarray | None, int]:
        """``(mask, count)`` of live rows passing the filter; mask None means every row.

        Sealed segments cache the mask per filter (``key``, its canonical text) until
        the next delete, so a repeated filter costs no scan of the payload columns. A filter
        the segment's payload indexes answer reads only its matching rows' values.
        """
        if node is None:
            return (None, self.n) if self.live_count == self.n else (self.live[: self.n], self.live_count)
        hit = self._cached(key)
        if hit is not None:
            return hit[1], hit[2]
        rows = indexed_rows(self, node)
        if rows is None:
            mask = self.live[: self.n] & node.mask(self.meta)
            count = int(np.count_nonzero(mask))
        else:
            rows = rows[self.live[rows]]
            mask = np.zeros(self.n, bool)
            mask[rows] = True
            count = int(rows.size)
        if self.sealed and key is not None:
            mask.flags.writeable = False  # shared by every search of this filter (indices may cache on it)
            self._masks[key] = [self._version, mask, count, rows, rows is not None]
            if len(self._masks) > MASK_CACHE:
                self._masks.popitem(last=False)
        return mask, count

    def forget_masks(self) -> None:
        """Drop cached filter answers (the segment's payload indexes changed: found another way now)."""
        self._masks.clear()

    def filter_source(self, key: str | None) -> str:
        """How the last ``match`` of filter ``key`` found its rows: "payload index" or "scan"."""
        hit = self._cached(key)
        return "payload index" if hit is not None and hit[4] else "scan"

    def _cached(self, key: str | None) -> list[Any] | None:
        """The cache entry of a filter, if this sealed segment holds a current one."""
        hit = self._masks.get(key) if self.sealed and key is not None else None
        if hit is None or hit[0] != self._version:
            return None
        self._masks.move_to_end(key)
        return hit

    def matching_rows(self, mask: np.ndarray, key: str | None) -> np.ndarray:
        """Positions of ``mask`` (the filter ``key``'s), computed once per filter on a sealed segment."""
        hit = self._cached(key)
        if hit is None:
            return np.flatnonzero(mask)
        if hit[3] is None:
            hit[3] = np.flatnonzero(mask)
        return hit[3]

    def search_exact(self, q: np.ndarray, k: int, mask: np.ndarray | None, count: int,
                     key: str | None) -> tuple[np.ndarray, np.ndarray]:
        rows_of = None if mask is None else (lambda: self.matching_rows(mask, key))
        d, rows = self.exact.search(self.vectors[: self.n], self.norms[: self.n], q, k, mask, count, rows_of)
        return d, self._internal(rows)

    def search_index(self, q: np.ndarray, k: int, mask: np.ndarray | None, params: dict[str, Any],
                     report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        assert self.index is not None
        d, rows = self.index.search_checked(q, k, params, mask, report)
        return d, self._internal(rows)

    def _internal(self, rows: np.ndarray) -> np.ndarray:
        """Rows (a search's fresh array, -1 padding) to internal ids in place: ``row | base`` is
        ``row + base`` for a row and keeps -1 (all bits set) as -1."""
        return np.bitwise_or(rows, self.base, out=rows)
