"""What replicas and routers say to each other: write operations and control signals.

A write travels as an ``Entry``: the shard's sequence number, the leader epoch that
numbered it, the router's operation id (so a retried call is applied once) and the
operation itself, already validated by the router (``Upsert`` / ``Delete``, and the partial
updates ``Update`` / ``SetMetadata`` / ``DeleteKeys``, which every replica applies as the same
read-modify-write of its own records, so replicas holding the same records end the same). Entries are
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
from ..engine.records import drop_keys, merge_values, replace_fields


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


@dataclass(frozen=True)
class Update:
    """``update``: every id exists (checked by the router on all shards, and again by the leader)."""

    ids: list[Any]
    vectors: np.ndarray | None  # prepared like Upsert.vectors
    metadata: list[dict[str, Any]] | None

    @property
    def nbytes(self) -> int:
        return (0 if self.vectors is None else int(self.vectors.nbytes)) + 64 * len(self.ids)


@dataclass(frozen=True)
class SetMetadata:
    ids: list[Any] | None
    filter: Any
    values: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return 64 * (len(self.ids) if self.ids else 1) + 64 * len(self.values)


@dataclass(frozen=True)
class DeleteKeys:
    ids: list[Any] | None
    filter: Any
    keys: list[str]

    @property
    def nbytes(self) -> int:
        return 64 * (len(self.ids) if self.ids else 1) + 64 * len(self.keys)


Operation = Upsert | Delete | Update | SetMetadata | DeleteKeys


@dataclass(frozen=True)
class Entry:
    seq: int
    epoch: int
    op_id: str
    op: Operation


def apply(col: Collection, op: Operation) -> int:
    """Apply a validated write to a replica's collection (logged by its WAL before it returns).

    Deletes and the filter/ids partial updates skip ids that are not there (a replayed delete
    finds its ids gone already); ``Update`` raises IdNotFoundError and changes nothing when one is
    missing, on the leader before the entry is numbered, so followers never see it.
    """
    shard = col._shard
    if isinstance(op, Upsert):
        shard.upsert(op.ids, op.vectors, op.metadata)
        return len(op.ids)
    if isinstance(op, Update):
        return shard.rewrite(op.ids, None, None, replace_fields(op.vectors, op.metadata), strict=True)
    node, key = _filter(op.filter)
    if isinstance(op, SetMetadata):
        return shard.rewrite(op.ids, node, key, merge_values(op.values), strict=False)
    if isinstance(op, DeleteKeys):
        return shard.rewrite(op.ids, node, key, drop_keys(op.keys), strict=False)
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
