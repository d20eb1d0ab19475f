"""The id tracker: external id -> internal id, the one owner of that mapping.

Internal ids are ``segment.base + row`` (see ``engine.segment``); the reverse
direction is each segment's ids (``engine.segment_ids``), so nothing else keeps a copy.

Integer ids that fit int64 live in a Numba open-addressing table (16 bytes a slot, no
Python object per id); other ids (strings, larger ints) in a dict.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import IdNotFoundError
from .kernels import idmap_numba as idmap

if TYPE_CHECKING:
    from .segment_ids import SegmentIds

ExternalId = Any
_INITIAL_SLOTS = 1024


def split_ids(ids: list[ExternalId]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(positions of int64 ids, those ids as int64, positions of the others)``."""
    if all(type(e) is int for e in ids):
        try:
            return np.arange(len(ids), dtype=np.int64), np.array(ids, dtype=np.int64), []
        except OverflowError:  # an int beyond int64 among them
            pass
    pos = [i for i, e in enumerate(ids) if type(e) is int and -2**63 <= e < 2**63]
    taken = set(pos)
    other = [i for i in range(len(ids)) if i not in taken]
    return np.array(pos, np.int64), np.array([ids[i] for i in pos], np.int64), other


class _IntMap:
    """int64 -> int64 in flat arrays (see ``engine.kernels.idmap_numba``), grown by doubling."""

    def __init__(self) -> None:
        self._alloc(_INITIAL_SLOTS)
        self.count = 0

    def _alloc(self, slots: int) -> None:
        self.keys = np.zeros(slots, np.int64)
        self.values = np.zeros(slots, np.int64)
        self.state = np.zeros(slots, np.uint8)
        self.tombstones = 0

    def lookup(self, query: np.ndarray) -> np.ndarray:
        return idmap.lookup(self.keys, self.values, self.state, query, np.empty(query.shape[0], np.int64))

    def reserve(self, more: int) -> None:
        """Room for ``more`` keys without another rehash (the table stays at most half full)."""
        if 2 * (self.count + self.tombstones + more) > self.keys.shape[0]:
            self._rehash(max(2 * (self.count + more), _INITIAL_SLOTS))

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.reserve(keys.shape[0])
        added, reused = idmap.insert(self.keys, self.values, self.state, keys, values)
        self.count += added
        self.tombstones -= reused

    def remove(self, keys: np.ndarray) -> None:
        removed = idmap.remove(self.keys, self.values, self.state, keys)
        self.count -= removed
        self.tombstones += removed

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        used = self.state == idmap.USED
        return self.keys[used], self.values[used]

    def _rehash(self, at_least: int) -> None:
        keys, values = self.items()
        self._alloc(1 << int(np.ceil(np.log2(max(at_least, 2)))))
        idmap.insert(self.keys, self.values, self.state, keys, values)


class IdTracker:
    """Where each live record is."""

    def __init__(self) -> None:
        self._ints = _IntMap()
        self._others: dict[ExternalId, int] = {}

    def __len__(self) -> int:
        return self._ints.count + len(self._others)

    def __contains__(self, ext: ExternalId) -> bool:
        return self.get(ext) is not None

    def __iter__(self) -> Iterator[ExternalId]:
        yield from self._ints.items()[0].tolist()
        yield from self._others

    def get(self, ext: ExternalId) -> int | None:
        found = self.lookup([ext])[0]
        return None if found < 0 else int(found)

    def lookup(self, ids: list[ExternalId]) -> np.ndarray:
        """Internal id of each of ``ids``, -1 where absent."""
        pos, keys, other = split_ids(ids)
        out = np.full(len(ids), -1, np.int64)
        if keys.size:
            out[pos] = self._ints.lookup(keys)
        for i in other:
            out[i] = self._others.get(ids[i], -1)
        return out

    def internal_of(self, ids: list[ExternalId], where: str) -> np.ndarray:
        """Internal ids of ``ids`` (all must be present, else IdNotFoundError naming up to 10)."""
        found = self.lookup(ids)
        if (found < 0).any():
            missing = [ids[i] for i in np.flatnonzero(found < 0).tolist()]
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise IdNotFoundError(f"ids not found in {where}: {missing[:10]}{more}")
        return found

    def present(self, ids: Iterable[ExternalId]) -> list[ExternalId]:
        ids = list(ids)
        return [e for e, i in zip(ids, self.lookup(ids).tolist()) if i >= 0]

    def assign(self, ids: Iterable[ExternalId], internal: Any) -> None:
        """Point ``ids`` at ``internal`` (an int64 array or a sequence of ints, one per id)."""
        ids = list(ids)
        internal = np.asarray(internal, np.int64)
        pos, keys, other = split_ids(ids)
        if keys.size:
            self._ints.insert(keys, internal[pos])
        for i in other:
            self._others[ids[i]] = int(internal[i])

    def reserve(self, more: int) -> None:
        """Room for ``more`` int ids at once (opening a collection: one table for every segment's
        ids instead of a rehash of all earlier ones at each segment)."""
        self._ints.reserve(more)

    def assign_rows(self, ids: "SegmentIds", rows: np.ndarray, base: int) -> None:
        """Point the ids of a segment's live ``rows`` at ``base + row`` (bulk, no Python object per int id)."""
        keys, int_rows, others, other_rows = ids.split(rows)
        self._ints.insert(keys, int_rows + base)
        self._others.update(zip(others, (other_rows + base).tolist()))

    def forget(self, ids: Iterable[ExternalId]) -> None:
        ids = list(ids)
        pos, keys, other = split_ids(ids)
        if keys.size:
            self._ints.remove(keys)
        for i in other:
            del self._others[ids[i]]
