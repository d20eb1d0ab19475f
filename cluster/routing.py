"""Which shard owns an id: a stable hash, the same in every process and Python version.

Python's ``hash()`` of a str is salted per process, so two routers would disagree; CRC32C of
a typed encoding is stable, fast (hardware-accelerated in ``google-crc32c``) and spreads ids
evenly. Ints and strs are encoded with a type tag, so ``1`` and ``"1"`` (distinct ids in
Shoal) may land on different shards.
"""
from __future__ import annotations

from collections.abc import Sequence

import google_crc32c

from ..engine.ids import ExternalId


def shard_of(ext: ExternalId, shards: int) -> int:
    raw = b"s" + ext.encode("utf-8") if isinstance(ext, str) else b"i" + str(int(ext)).encode("ascii")
    return google_crc32c.value(raw) % shards


def partition(ids: Sequence[ExternalId], shards: int) -> list[list[int]]:
    """Positions in ``ids`` per shard, in input order (a batch becomes one call per shard)."""
    out: list[list[int]] = [[] for _ in range(shards)]
    for pos, ext in enumerate(ids):
        out[shard_of(ext, shards)].append(pos)
    return out
