"""What replicas and routers say to each other: write operations and control signals.

A write travels as an ``Entry``: the shard's sequence number, the leader epoch that
numbered it, the router's operation id (so a retried call is applied once) and the
operation itself, already validated by the router (``Upsert`` / ``Delete``). Entries are
applied in sequence order and are idempotent when replayed in order, which is what makes
the position file's one-write lag harmless (``storage.replica_position``).

The control signals are exceptions a replica raises and the router (or a peer) handles;
none reaches the user.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.collection import Collection, _filter


@dataclass(frozen=True)
class Upsert:
    ids: list[Any]
    vectors: np.ndarray  # validated and prepared (normalised for cosine) by the router, as Collection.upsert does
    metadata: list[dict[str, Any]]

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes) + 64 * len(self.ids)


@dataclass(frozen=True)
class Delete:
    ids: list[Any] | None
    filter: Any = None  # the filter document (compiled where it is applied)

    @property
    def nbytes(self) -> int:
        return 64 * (len(self.ids) if self.ids else 1)


Operation = Upsert | Delete


@dataclass(frozen=True)
class Entry:
    seq: int
    epoch: int
    op_id: str
    op: Operation


def apply(col: Collection, op: Operation) -> int:
    """Apply a validated write to a replica's collection (logged by its WAL before it returns).

    A delete by ids removes those present: the router checked that every id exists before it
    sent the delete, and a replayed delete finds its ids gone already.
    """
    shard = col._shard
    if isinstance(op, Upsert):
        shard.upsert(op.ids, op.vectors, op.metadata)
        return len(op.ids)
    node, key = _filter(op.filter)
    ids = None if op.ids is None else shard.tracker.present(op.ids)
    if ids is not None and not ids:
        return 0
    return shard.delete(ids, node, key)


class ReplicaSignal(Exception):
    """Base of the control signals; carries a short reason."""


class NotServing(ReplicaSignal):
    """The replica is recovering (reopening, catching up) and answers neither reads nor writes."""


class NotLeader(ReplicaSignal):
    """Writes go to another replica of the shard: ``leader`` (None when unknown)."""

    def __init__(self, leader: int | None, reason: str = "") -> None:
        super().__init__(leader, reason)
        self.leader = leader


class StaleEpoch(ReplicaSignal):
    """A write from a leader older than the one this replica follows."""


class Behind(ReplicaSignal):
    """The replica misses writes before the one it was sent; ``seq`` is its last."""

    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq
