"""Declaring and dropping a payload index on an existing collection (``col.create_payload_index``,
``col.drop_payload_index``), without blocking readers and crash-safe at every step.

Create: under the optimizer's merge lock (no merge replaces segments meanwhile; searches and
writes go on), the index is built for every sealed segment from its columns, with no shard
lock held (a sealed segment's columns never change), and written as a side file per segment
(``storage.segment_files.write_payload_index_file``). Then, under the write lock (a short
one), segments sealed during the build get theirs, and one manifest commit names the side files
and the new declaration together; only after it succeeds do searches see the index. A kill -9
before that commit leaves the old manifest: the collection opens as before, without the index,
and the next writable open removes the side files; after it, the index is there. The growing
segment is scanned until it is sealed, when it gets every declared index like any other.

Drop: one manifest commit without the field; the segments' stored arrays for it stay unused in
their files until a merge rewrites them (``attach_payload_indexes`` takes only declared fields).
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import InvalidArgumentError, PayloadIndexNotFoundError
from .payload_index import PayloadIndexConfig, PayloadIndexes

if TYPE_CHECKING:
    from .segment import Segment
    from .shard import Shard


def _declared(shard: "Shard") -> dict[str, str]:
    config = shard.layout.payload_indexes
    return {} if config is None else config.to_options()


def create_payload_index(shard: "Shard", field: str, kind: str) -> bool:
    """Index ``field`` as ``kind`` in every segment; False when it already is (nothing changes)."""
    PayloadIndexConfig.from_options({field: kind})  # validates the name and kind before waiting
    with shard.optimizer.merging:  # also orders declarations: each starts from the last one committed
        declared = _declared(shard)
        config = PayloadIndexConfig.from_options({**declared, field: kind})
        if declared.get(field) == kind:
            return False
        if field in declared:
            raise InvalidArgumentError(f"field {field!r} already has a {declared[field]} payload index; "
                                       f"drop_payload_index({field!r}) first to index it as {kind}")
        with shard.lock.read():
            shard.check_open()
            sealed = [s for s in shard.segments if s.sealed]
        built = {}
        try:
            for seg in sealed:  # no lock held: readers and writers go on
                built[id(seg)] = _built(shard, seg, config)
            with shard.lock.write():
                shard.check_open()
                for seg in shard.segments:  # sealed while the others were built (small ones)
                    if seg.sealed and id(seg) not in built:
                        built[id(seg)] = _built(shard, seg, config)
                _commit(shard, config, built)
        except BaseException:
            shard.store.abandon_side_files()
            raise
    return True


def _built(shard: "Shard", seg: "Segment", config: PayloadIndexConfig) -> tuple[dict | None, PayloadIndexes]:
    """A sealed segment's indexes under ``config`` (declared ones reused) and its side file's entry."""
    have = {} if seg.payload_indexes is None else seg.payload_indexes.by_field
    indexes = PayloadIndexes.build(config, seg.meta, seg.n, reuse=have)
    return shard.store.write_payload_indexes(seg, indexes)


def _commit(shard: "Shard", config: PayloadIndexConfig | None, built: dict) -> None:
    """Under the write lock: one manifest commit, then the in-memory switch (nothing changes if it fails)."""
    sealed = [s for s in shard.segments if s.sealed]
    old_entries = [s.disk for s in sealed]
    for seg in sealed:
        entry = built.get(id(seg), (None, None))[0]
        if entry is not None:
            seg.disk = entry
    try:
        shard.store.commit_config(sealed, {"payload_indexes": None if config is None else config.to_options()})
    except BaseException:
        for seg, entry in zip(sealed, old_entries):
            seg.disk = entry
        raise
    shard.layout = replace(shard.layout, payload_indexes=config)
    kept = {} if config is None else config.to_options()
    for seg in shard.segments:
        seg.payload_config = config
        if id(seg) in built:
            seg.payload_indexes = built[id(seg)][1]
        elif seg.payload_indexes is not None:  # a drop: the remaining fields' indexes stay
            seg.payload_indexes = PayloadIndexes({f: ix for f, ix in seg.payload_indexes.by_field.items() if f in kept}) \
                if kept else None
        seg.forget_masks()  # cached filter answers were found another way


def drop_payload_index(shard: "Shard", field: str) -> None:
    """Stop indexing ``field`` (PayloadIndexNotFoundError when it is not indexed)."""
    with shard.optimizer.merging:
        declared = _declared(shard)
        if field not in declared:
            raise PayloadIndexNotFoundError(
                f"collection {shard.name!r} has no payload index on {field!r}"
                + (f"; indexed fields: {', '.join(sorted(declared))}" if declared else "; it has none"))
        rest = {k: v for k, v in declared.items() if k != field}
        config = PayloadIndexConfig.from_options(rest) if rest else None
        with shard.lock.write():
            shard.check_open()
            _commit(shard, config, {})
