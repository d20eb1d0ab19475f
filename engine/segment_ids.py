"""The external id of each row of a segment (the reverse of the id tracker).

Integer ids that fit int64 sit in an int64 array (8 bytes a row, no Python object);
other ids (strings, larger ints) in a dict by row. A deleted row's id reads as None.
Stored as arrays in the segment's rows file and memory-mapped on open.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .id_tracker import split_ids
from .small_arrays import all_are

DEAD, INT, OTHER = 0, 1, 2


class SegmentIds:
    """Ids of rows ``0..n-1`` (growable in memory; read-only over stored arrays)."""

    def __init__(self) -> None:
        self.value = np.zeros(0, np.int64)
        self.kind = np.zeros(0, np.uint8)
        self.others: dict[int, Any] = {}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def values(self, rows: np.ndarray) -> list[Any]:
        """The ids of ``rows`` (None for deleted ones): one gather when all are int ids."""
        kinds = self.kind[rows]
        if all_are(kinds, INT):
            return self.value[rows].tolist()
        others = self.others
        return [v if k == INT else (others[r] if k == OTHER else None)
                for v, k, r in zip(self.value[rows].tolist(), kinds.tolist(), rows.tolist())]

    def take(self, rows: np.ndarray) -> "SegmentIds":
        """A growable copy holding ``rows`` of these as rows ``0..len(rows)-1`` (numpy gathers)."""
        out = SegmentIds()
        out.value, out.kind, out.n = self.value[rows], self.kind[rows], int(rows.size)
        if self.others:
            out.others = {i: self.others[r] for i, r in enumerate(rows.tolist()) if r in self.others}
        return out

    def extend(self, ids: "list[Any] | SegmentIds") -> None:
        """Append ids (a list, or another SegmentIds: a merge's copy)."""
        if isinstance(ids, SegmentIds):
            value, kind, others = ids.value[: ids.n], ids.kind[: ids.n], ids.others
        else:
            pos, keys, other = split_ids(ids)
            value, kind = np.zeros(len(ids), np.int64), np.full(len(ids), OTHER, np.uint8)
            value[pos], kind[pos] = keys, INT
            others = {i: ids[i] for i in other}
        start, m = self.n, value.shape[0]
        self._reserve(start + m)
        self.value[start:start + m], self.kind[start:start + m] = value, kind
        self.others.update({start + r: e for r, e in others.items()})
        self.n += m

    def kill(self, rows: np.ndarray) -> None:
        """Rows deleted: their ids read as None from now on."""
        self.kind[rows] = DEAD
        for r in rows.tolist():
            self.others.pop(r, None)

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Any], np.ndarray]:
        """For the tracker: ``(int ids, their rows, other ids, their rows)`` of live ``rows``."""
        kind = self.kind[rows]
        ints, others = rows[kind == INT], rows[kind == OTHER]
        return self.value[ints], ints, [self.others[r] for r in others.tolist()], others

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        n = self.n
        return {"value": self.value[:n], "kind": self.kind[:n]}, {"others": [[r, e] for r, e in self.others.items()]}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "SegmentIds":
        out = cls()
        # kinds are copied (1 byte a row): deletes write them; values stay memory-mapped
        out.value, out.kind, out.n = arrays["value"], np.array(arrays["kind"]), int(arrays["kind"].shape[0])
        out.others = {int(r): e for r, e in meta["others"]}
        return out

    @classmethod
    def from_list(cls, ids: list[Any]) -> "SegmentIds":
        """From one id (or None for a dead row) per row: a segment written before rows files."""
        out = cls()
        out.extend([0 if e is None else e for e in ids])
        out.kill(np.array([r for r, e in enumerate(ids) if e is None], np.int64))
        return out

    def _reserve(self, n: int) -> None:
        cap = self.value.shape[0]
        if n <= cap:
            return
        cap = max(n, 2 * cap, 256)
        for name in ("value", "kind"):
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)
