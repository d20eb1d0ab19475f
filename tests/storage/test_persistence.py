"""Durable databases: restart equivalence, compaction, corruption, modes, locks, read-only, snapshots."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import shoal
from shoal.engine import stores
from shoal.engine.errors import (CollectionNotFoundError, CorruptionError, FailedPreconditionError,
                                 FormatVersionError, LockedError, ReadOnlyError)
from shoal.index.factory import known_specs, make_index
from shoal.index.flat import FlatIndex
from tests.conftest import wait_for

DIM = 32
QUERY_FILTER = {"g": {"$in": [0, 2]}}


def _specs() -> list[str]:
    """Every registered family's example, with small IVF lists so the indices actually train on test
    data. A spec that no longer builds fails here (it used to be dropped, and its test with it)."""
    out = []
    for spec in known_specs():
        if "<" in spec:  # the grammar's summary, not a spec
            continue
        spec = spec.replace("IVF256", "IVF4")
        make_index(spec, DIM, "l2")
        out.append(spec)
    return out


def test_every_family_is_in_the_restart_test() -> None:
    assert {s.split(",")[0].rstrip("0123456789") for s in _specs()} >= {"Flat", "HNSW", "KDTree", "PQ", "SQ", "ivf",
                                                                       "IVF", "OPQ"}


#: Recall floors of the pre-restart results against brute force (exact families must be equal).
RECALL_FLOORS = {"HNSW32": 0.9, "SQ8": 0.9, "IVF4,Flat": 0.5, "IVF4,SQ8": 0.5, "ivf": 0.3, "PQ16": 0.5,
                 "IVF4,PQ16": 0.3, "OPQ16,PQ16": 0.5}


#: Route searches through the (approximate) index even for small segments; merge only when asked.
THROUGH_INDEX = {"planner": {"exact_max_rows": 0, "index_cost_factor": 0.0}, "optimizer": {"background": False}}


def _live_ids(col: shoal.Collection) -> list:
    """Live ids in internal-id order (segment by segment)."""
    return [e for seg in col._shard.segments for e in seg.ids.values(np.arange(seg.n)) if e is not None]


def _churn(col: shoal.Collection, rng: np.random.Generator, n: int = 700) -> np.ndarray:
    """Batches of upserts, overwrites and deletes; returns the vectors (by id) last written."""
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    for start in range(0, n, 100):
        ids = list(range(start, min(n, start + 100)))
        col.upsert(ids, x[ids], [{"g": i % 3, "name": f"r{i}"} for i in ids])
    over = rng.choice(n, 60, replace=False)
    x[over] = rng.standard_normal((60, DIM)).astype(np.float32)
    col.upsert(over.tolist(), x[over], [{"g": int(i) % 3, "name": "over"} for i in over])
    col.delete(ids=rng.choice(np.setdiff1d(np.arange(n), over), 50, replace=False).tolist())
    col.delete(filter={"name": "r7"})
    return x


def _results(col: shoal.Collection, queries: np.ndarray) -> list[tuple[list, np.ndarray, list]]:
    out = []
    for flt in (None, QUERY_FILTER):
        for r in col.search(queries, k=10, filter=flt):
            out.append((r.ids, r.distances, r.metadata))
    return out


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (ia, da, ma), (ib, db_, mb) in zip(a, b):
        assert ia == ib and ma == mb
        np.testing.assert_array_equal(da, db_)


def _check_against_brute_force(col: shoal.Collection, q: np.ndarray, results: list, spec: str) -> None:
    """What the restart must reproduce is right to begin with: live rows only, the filter held,
    ids equal to brute force for exact families, a recall floor for the others."""
    from tests.conftest import brute_force

    live = sorted(col._shard.tracker, key=repr)
    got = col.get(live)
    groups = np.array([m["g"] for m in got.metadata])
    recalls = []
    for n_flt, rows in enumerate((np.arange(len(live)), np.flatnonzero(np.isin(groups, [0, 2])))):
        ref_d, ref_i = brute_force(q, got.vectors[rows], 10, "l2", labels=rows)
        for r in range(q.shape[0]):
            ids, dists, meta = results[n_flt * q.shape[0] + r]
            assert len(ids) == 10 and set(ids) <= set(live)
            if n_flt:
                assert all(m["g"] in (0, 2) for m in meta)
            truth = [live[i] for i in ref_i[r]]
            if spec in RECALL_FLOORS:
                recalls.append(len(set(ids) & set(truth)) / 10)
            else:
                assert ids == truth, (spec, n_flt, r)
                np.testing.assert_allclose(dists, ref_d[r], rtol=1e-4, atol=1e-4)
    if spec in RECALL_FLOORS:
        assert np.mean(recalls) >= RECALL_FLOORS[spec], (spec, np.mean(recalls))


@pytest.mark.parametrize("spec", _specs())
def test_restart_equivalence(tmp_path: Path, rng: np.random.Generator, spec: str) -> None:
    q = rng.standard_normal((5, DIM)).astype(np.float32)
    n = max(700, getattr(make_index(spec, DIM, "l2"), "min_train_size", 1) + 300)  # big enough to train
    db = shoal.Database(tmp_path, flush_rows=(n - 200) // 2)
    col = db.create_collection("c", dim=DIM, metric="l2", index=spec, **THROUGH_INDEX)
    _churn(col, rng, n)
    col.optimize()  # the sealed segments merge into one indexed segment
    _churn(col, rng, 150)  # a WAL tail in the growing segment, deletes on the indexed one
    segs = col._shard.segments
    assert segs[0].sealed and col._shard.growing.n and (segs[0].indexed or segs[0].index is None)
    before = _results(col, q)
    _check_against_brute_force(col, q, before, spec)
    with shoal.Database(tmp_path, read_only=True) as ro:  # replays the WAL tail while the writer is open
        _assert_same(before, _results(ro.get_collection("c"), q))
    db.close()
    with shoal.Database(tmp_path) as db2:
        col2 = db2.get_collection("c")
        assert col2.describe()["index"] == col.describe()["index"] and len(col2) == len(col)
        _assert_same(before, _results(col2, q))


@pytest.mark.parametrize("spec", ["Flat", "KDTree"])
def test_optimize_and_compact_keep_exact_results(tmp_path: Path, rng: np.random.Generator, spec: str) -> None:
    """Same ids, same payloads; distances equal up to float rounding (a scan may gather rows first)."""
    q = rng.standard_normal((5, DIM)).astype(np.float32)

    def _assert_same(a: list, b: list) -> None:
        for (ia, da, ma), (ib, db_, mb) in zip(a, b, strict=True):
            assert ia == ib and ma == mb
            np.testing.assert_allclose(da, db_, rtol=1e-6)

    with shoal.Database(tmp_path, flush_rows=100, compact_threshold=1.0) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", index=spec, optimizer={"background": False})
        _churn(col, rng)
        before = _results(col, q)
        assert len(col._shard.segments) > 2
        col.optimize()
        assert len(col._shard.segments) == 2  # one merged segment + the empty growing one
        _assert_same(before, _results(col, q))
        col.compact()
        assert [s.n for s in col._shard.segments] == [len(col), 0]  # every deleted row dropped
        _assert_same(before, _results(col, q))
    with shoal.Database(tmp_path) as db:
        _assert_same(before, _results(db.get_collection("c"), q))


def test_merge_reapplies_concurrent_writes_and_never_blocks_readers(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    db = shoal.Database(tmp_path, flush_rows=200, compact_threshold=1.0)
    col = db.create_collection("c", dim=DIM, metric="l2", optimizer={"background": False})
    x = _churn(col, rng)
    col.flush()
    victim, moved = 11, 12
    fresh_vec = x[0:1] + 100.0
    real_write = stores.write_segment
    searched = []

    def slow_write(directory: Path, data, generation: int) -> dict:
        if directory.parent == tmp_path / "collections" / "c" and not searched:
            searched.append(col.search(x[victim], k=1).ids)  # a reader gets through mid-merge
            done = threading.Event()

            def writer() -> None:
                col.delete(ids=[victim])
                col.upsert([moved], fresh_vec)
                done.set()
            threading.Thread(target=writer).start()
            assert done.wait(10), "writer blocked by the merge's build phase"
        return real_write(directory, data, generation)

    monkeypatch.setattr(stores, "write_segment", slow_write)
    col.optimize()
    assert searched == [[victim]]
    assert len(col._shard.segments) <= 3  # merged (+ the segment the concurrent upsert sealed) + growing
    assert victim not in col._shard.tracker and col.search(fresh_vec[0], k=1).ids == [moved]
    np.testing.assert_array_equal(col.get([moved]).vectors, fresh_vec)
    db.close()
    with shoal.Database(tmp_path) as db:
        col = db.get_collection("c")
        assert victim not in col._shard.tracker and col.search(fresh_vec[0], k=1).ids == [moved]
        np.testing.assert_array_equal(col.get([moved]).vectors, fresh_vec)


def test_automatic_vacuum_past_threshold(tmp_path: Path, rng: np.random.Generator) -> None:
    with shoal.Database(tmp_path, flush_rows=100, compact_threshold=0.2) as db:
        col = db.create_collection("c", dim=4, optimizer={"background": False})
        col.upsert(list(range(100)), rng.standard_normal((100, 4)))
        seg = col._shard.segments[0]
        assert seg.sealed and seg.n == 100
        col.delete(ids=list(range(15)))
        col.optimize()
        assert col._shard.segments[0].n == 100  # 15% deleted: below threshold
        col.delete(ids=list(range(15, 25)))
        col.optimize()
        assert col._shard.segments[0].n == 75 and len(col) == 75  # 25%: vacuumed
        segs = sorted(p.name for p in (tmp_path / "collections" / "c").glob("seg-*"))
        assert len(segs) == 1  # the old segment's files are gone


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(data)


@pytest.mark.parametrize("target", ["vectors.npy", "norms.npy", "rows.bin", "tomb", "index.bin", "MANIFEST",
                                    "truncate-vectors.npy"])
def test_corrupt_files_raise_clear_errors(tmp_path: Path, rng: np.random.Generator, target: str) -> None:
    with shoal.Database(tmp_path, flush_rows=100) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", index="IVF4,Flat", optimizer={"background": False})
        col.upsert(list(range(300)), rng.standard_normal((300, DIM)))
        col.optimize()  # one indexed segment with every kind of file
        col.delete(ids=[1, 2])
    cdir = tmp_path / "collections" / "c"
    seg = sorted(cdir.glob("seg-*"))[0]
    if target == "MANIFEST":
        path = cdir / "MANIFEST"
    elif target == "tomb":
        path = next(seg.glob("tomb-*"))
    else:
        path = seg / target.replace("truncate-", "")
    if target.startswith("truncate"):
        path.write_bytes(path.read_bytes()[:-7])
    else:
        _flip(path, path.stat().st_size - 3)
    for kwargs in ({}, {"read_only": True}):
        with shoal.Database(tmp_path, **kwargs) as db:  # the database opens; that collection reports its damage
            with pytest.raises(CorruptionError, match=path.name):
                db.get_collection("c")


def test_segments_written_before_rows_files_still_open(tmp_path: Path, rng: np.random.Generator) -> None:
    """A segment whose ids and payloads are JSON (rows.json, the first segment format) opens and
    answers the same; new segments beside it use the rows file."""
    import json

    from shoal.storage.manifest import read_manifest, write_manifest
    from shoal.storage.segment_files import LEGACY_ROWS, ROWS, file_crc

    x = rng.standard_normal((50, DIM)).astype(np.float32)
    ids = list(range(25)) + [f"s{i}" for i in range(25)]
    meta = [{"g": i % 3, "tag": [i, {"n": None}]} for i in range(50)]
    with shoal.Database(tmp_path) as db:
        col = db.create_collection("c", dim=DIM, metric="l2", optimizer={"background": False})
        col.upsert(ids, x, meta)
        col.flush()
        col.delete(ids=[3, "s4"])
        before = col.search(x[:5], k=5, filter={"g": 1})
    cdir = tmp_path / "collections" / "c"
    doc = read_manifest(cdir)
    (entry,) = doc["segments"]
    seg = cdir / entry["dir"]
    legacy = {"ids": [None if i in (3, "s4") else i for i in ids], "meta": meta}
    (seg / LEGACY_ROWS).write_text(json.dumps(legacy))
    (seg / ROWS).unlink()
    del entry["files"][ROWS]
    entry["files"][LEGACY_ROWS] = [(seg / LEGACY_ROWS).stat().st_size, file_crc(seg / LEGACY_ROWS)]
    write_manifest(cdir, doc)
    with shoal.Database(tmp_path) as db:
        col = db.get_collection("c")
        after = col.search(x[:5], k=5, filter={"g": 1})
        assert [r.ids for r in after] == [r.ids for r in before]
        assert [r.metadata for r in after] == [r.metadata for r in before]
        assert len(col) == 48 and col.get(["s5"]).metadata == [meta[30]]
        col.upsert(["new"], x[:1], [{"g": 1}])
        col.optimize()  # merges the legacy segment into one written with a rows file
    with shoal.Database(tmp_path) as db:
        col = db.get_collection("c")
        assert len(col) == 49 and col.search(x[0], k=1, filter={"g": 1}).ids == ["new"]
    assert all(not (cdir / e["dir"] / LEGACY_ROWS).exists() for e in read_manifest(cdir)["segments"])


def test_corrupt_wal_raises_and_repair_keeps_valid_records(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((40, 4)).astype(np.float32)
    db = shoal.Database(tmp_path, flush_rows=10_000)
    col = db.create_collection("c", dim=4, metric="l2")
    for b in range(4):
        col.upsert(list(range(b * 10, b * 10 + 10)), x[b * 10:b * 10 + 10])
    wal = tmp_path / "collections" / "c" / "wal.log"
    data = wal.read_bytes()
    db._release()  # simulate a crash: no flush
    from shoal.storage.wal import read_log
    second = read_log(wal)[1][1].offset
    _flip(wal, second + 40)
    with shoal.Database(tmp_path) as broken, pytest.raises(CorruptionError, match=rf"wal.log: record at offset {second}"):
        broken.get_collection("c")
    wal.write_bytes(data[:-5])  # torn tail only: recovered silently, last batch dropped
    with shoal.Database(tmp_path, read_only=True) as ro:
        assert len(ro.get_collection("c")) == 30
    wal.write_bytes(data)
    _flip(wal, second + 40)
    with shoal.Database(tmp_path, repair=True) as db:
        col = db.get_collection("c")
        assert sorted(col._shard.tracker) == list(range(10)) + list(range(20, 40))
        np.testing.assert_array_equal(col.get([25]).vectors[0], x[25])
    assert list((tmp_path / "collections" / "c").glob("wal.log.damaged-*"))
    with shoal.Database(tmp_path) as db:  # the repaired state is durable and clean
        assert len(db.get_collection("c")) == 30


def test_index_files_are_versioned(tmp_path: Path, rng: np.random.Generator) -> None:
    idx = FlatIndex(4)
    idx.add(rng.standard_normal((5, 4)), np.arange(5))
    path = tmp_path / "flat.bin"
    idx.save(path)
    data = bytearray(path.read_bytes())
    data[16] = 99  # version field after magic + kind
    path.write_bytes(data)
    with pytest.raises(FormatVersionError, match="version 99"):
        FlatIndex.load(path)
    data[16] = 1
    data[8:16] = b"HNSW    "
    path.write_bytes(data)
    with pytest.raises(FormatVersionError, match="expected 'FLAT'"):
        FlatIndex.load(path)


@pytest.mark.parametrize("sync", ["always", "batch", "never"])
def test_sync_modes_acknowledged_writes_are_visible_to_a_new_open(tmp_path: Path, sync: str,
                                                                  rng: np.random.Generator) -> None:
    db = shoal.Database(tmp_path, sync=sync, sync_interval_ms=5)
    col = db.create_collection("c", dim=4)
    col.upsert(list(range(20)), rng.standard_normal((20, 4)))
    col.delete(ids=[3])
    with shoal.Database(tmp_path, read_only=True) as ro:
        assert len(ro.get_collection("c")) == 19
    if sync == "batch":  # the group commit runs within sync_interval_ms (polled: no fixed sleep)
        wait_for(lambda: col._shard.store.wal._pending == 0, what="the batch group commit")
    elif sync == "never":
        assert col._shard.store.wal._pending == 2
    db.close()


def test_lock_read_only_and_closed(tmp_path: Path, rng: np.random.Generator) -> None:
    db = shoal.Database(tmp_path)
    col = db.create_collection("c", dim=4)
    col.upsert([1, 2], rng.standard_normal((2, 4)))
    with pytest.raises(LockedError, match="open for writing"):
        shoal.Database(tmp_path)
    code = f"import shoal\ntry:\n shoal.Database({str(tmp_path)!r})\nexcept shoal.engine.errors.LockedError:\n print('locked')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "locked", out.stderr
    ro = shoal.Database(tmp_path, read_only=True)
    rcol = ro.get_collection("c")
    col.upsert([3], rng.standard_normal((1, 4)))
    assert len(rcol) == 2  # state as of its open
    for call in (lambda: rcol.upsert([9], np.ones(4)), lambda: rcol.delete(ids=[1]), rcol.compact,
                 lambda: ro.create_collection("d", dim=4), lambda: ro.drop_collection("c")):
        with pytest.raises(ReadOnlyError):
            call()
    ro.close()
    db.close()
    for call in (lambda: col.upsert([4], np.ones(4)), col.count, lambda: col.search(np.ones(4)),
                 lambda: col.get([1])):
        with pytest.raises(FailedPreconditionError, match="closed"):
            call()
    with shoal.Database(tmp_path) as db2:  # the lock was released
        assert len(db2.get_collection("c")) == 3


def test_snapshot_and_drop(tmp_path: Path, rng: np.random.Generator) -> None:
    q = rng.standard_normal((3, DIM)).astype(np.float32)
    with shoal.Database(tmp_path / "db", flush_rows=300) as db:
        col = db.create_collection("c", dim=DIM, metric="cosine")
        _churn(col, rng)
        db.create_collection("empty", dim=3)
        expect = _results(col, q)
        db.snapshot(tmp_path / "snap")
        with pytest.raises(shoal.InvalidArgumentError, match="already exists"):
            db.snapshot(tmp_path / "snap")
        col.delete(filter={})  # later writes do not reach the snapshot
        db.drop_collection("empty")
    with shoal.Database(tmp_path / "snap") as snap:
        assert snap.list_collections() == ["c", "empty"]
        _assert_same(expect, _results(snap.get_collection("c"), q))
    with shoal.Database(tmp_path / "db") as db:
        assert db.list_collections() == ["c"] and len(db.get_collection("c")) == 0
        with pytest.raises(CollectionNotFoundError):
            db.get_collection("empty")
    mem = shoal.Database()
    mcol = mem.create_collection("m", dim=DIM)
    _churn(mcol, rng)
    mem.snapshot(tmp_path / "memsnap")
    with shoal.Database(tmp_path / "memsnap") as db:
        _assert_same(_results(mcol, q), _results(db.get_collection("m"), q))


def test_invalid_storage_options(tmp_path: Path) -> None:
    for kwargs in ({"sync": "sometimes"}, {"flush_rows": 0}, {"compact_threshold": 1.5}, {"flushrows": 3}):
        with pytest.raises(shoal.InvalidArgumentError):
            shoal.Database(tmp_path / "db", **kwargs)
    with pytest.raises(shoal.InvalidArgumentError, match="need a path"):
        shoal.Database(read_only=True)
    with pytest.raises(shoal.StorageError, match="not a Shoal data directory"):
        shoal.Database(tmp_path / "missing", read_only=True)
    assert shoal.Database().create_collection("c", dim=2).compact() is False  # in memory: nothing to drop
    (tmp_path / "file").write_text("x")
    with pytest.raises(shoal.StorageError, match="not a directory"):
        shoal.Database(tmp_path / "file")


def test_leftovers_of_interrupted_create_and_drop_are_removed(tmp_path: Path, rng: np.random.Generator) -> None:
    with shoal.Database(tmp_path) as db:
        db.create_collection("c", dim=4).upsert([1], rng.standard_normal((1, 4)))
    cdir = tmp_path / "collections"
    for name in (".tmp-new", ".drop-old"):  # what a crash mid-create / mid-drop leaves
        (cdir / name / "seg-1").mkdir(parents=True)
        (cdir / name / "MANIFEST").write_bytes(b"partial")
    with shoal.Database(tmp_path, read_only=True) as ro:  # a reader changes nothing
        assert ro.list_collections() == ["c"] and not ro.unavailable
    assert (cdir / ".tmp-new").exists() and (cdir / ".drop-old").exists()
    with shoal.Database(tmp_path) as db:
        assert db.list_collections() == ["c"] and not db.unavailable and len(db.get_collection("c")) == 1
    assert sorted(p.name for p in cdir.iterdir()) == ["c"]


def test_verify_false_opens_without_checksumming_segment_files(tmp_path: Path, rng: np.random.Generator) -> None:
    with shoal.Database(tmp_path, flush_rows=50) as db:
        col = db.create_collection("c", dim=4, optimizer={"background": False})
        col.upsert(list(range(60)), rng.standard_normal((60, 4)))
    seg = sorted((tmp_path / "collections" / "c").glob("seg-*"))[0]
    vec = seg / "vectors.npy"
    data = bytearray(vec.read_bytes())
    data[-1] ^= 0x01  # one low mantissa bit of the last float: still a valid array
    vec.write_bytes(bytes(data))
    with shoal.Database(tmp_path) as db:
        with pytest.raises(CorruptionError, match="vectors.npy: checksum mismatch"):
            db.get_collection("c")
    with shoal.Database(tmp_path, verify=False) as db:  # trusts the files: opens, and serves the damaged value
        col = db.get_collection("c")
        assert len(col) == 60 and col.get([49]).vectors.shape == (1, 4)
    for bad in ({"sync_records": 0}, {"sync_records": True}, {"sync_interval_ms": -1}):
        with pytest.raises(shoal.InvalidArgumentError, match=next(iter(bad))):
            shoal.Database(tmp_path / "other", **bad)


def test_sync_records_groups_fsyncs_of_a_durable_collection(tmp_path: Path, rng: np.random.Generator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.storage import wal as wal_module

    with shoal.Database(tmp_path, sync="batch", sync_interval_ms=60_000, sync_records=4) as db:
        col = db.create_collection("c", dim=4)
        syncs: list[int] = []
        real = wal_module.os.fdatasync
        monkeypatch.setattr(wal_module.os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))
        for i in range(9):
            col.upsert([i], rng.standard_normal((1, 4)))
        assert len(syncs) == 2 and col._shard.store.wal._pending == 1  # after the 4th and the 8th write
    with shoal.Database(tmp_path) as db:
        assert len(db.get_collection("c")) == 9
