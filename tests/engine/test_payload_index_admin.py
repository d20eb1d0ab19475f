"""Payload indexes declared and dropped on an existing collection: same answers as an unindexed
twin, durable, built without the write lock, refusals that change nothing, and kill -9 at any
step leaving the collection usable with the index either present or absent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import shoal
from shoal import InvalidArgumentError, NotFoundError
from shoal.engine.collection import Collection
from shoal.engine.errors import PayloadIndexNotFoundError, ReadOnlyError
from shoal.engine.payload_index import PayloadIndexes
from tests.engine.test_payload_index import FILTERS, _assert_same_answers, _fill, _payload

CHILD = Path(__file__).with_name("payload_index_child.py")
OPTS = dict(dim=8, metric="l2", optimizer={"background": False})


def _segments(col):
    return [s for s in col._shard.segments if s.sealed]


def test_declared_later_answers_like_declared_at_creation():
    indexed = Collection("ix", **OPTS, _flush_rows=500)
    plain = Collection("plain", **OPTS, _flush_rows=500)
    for col in (indexed, plain):
        _fill(col, 2600)  # five sealed segments and a growing one
        col.delete(list(range(0, 2600, 3)))
    queries = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    _assert_same_answers(indexed, plain, queries, expect_index=False)
    assert indexed.create_payload_index("tag", "keyword") is True
    assert indexed.create_payload_index("year", "range") is True
    assert indexed.create_payload_index("year", "range") is False  # already: nothing changes
    assert indexed.describe()["payload_indexes"] == {"tag": "keyword", "year": "range"}
    _assert_same_answers(indexed, plain, queries)
    for col in (indexed, plain):  # new rows, seals and merges keep them
        _fill(col, 900, start=2600)
        col.optimize()
    assert all(set(s.payload_indexes.by_field) == {"tag", "year"} for s in _segments(indexed))
    _assert_same_answers(indexed, plain, queries)
    indexed.drop_payload_index("tag")
    assert indexed.describe()["payload_indexes"] == {"year": "range"}
    assert all(set(s.payload_indexes.by_field) == {"year"} for s in _segments(indexed))
    _assert_same_answers(indexed, plain, queries)
    indexed.drop_payload_index("year")
    assert indexed.describe()["payload_indexes"] is None
    _assert_same_answers(indexed, plain, queries, expect_index=False)


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.create_payload_index("tag", "bitmap"), InvalidArgumentError, "must be one of keyword, range"),
    (lambda c: c.create_payload_index("a.b", "range"), InvalidArgumentError, "nested paths are not indexed"),
    (lambda c: c.create_payload_index(7, "range"), InvalidArgumentError, "not an indexable field name"),
    (lambda c: c.create_payload_index("year", "keyword"), InvalidArgumentError, "already has a range payload index"),
    (lambda c: c.drop_payload_index("tag"), PayloadIndexNotFoundError, "no payload index on 'tag'; indexed fields: year"),
])
def test_bad_requests_are_refused_and_change_nothing(tmp_path, call, error, message):
    with shoal.Database(tmp_path / "db", flush_rows=300) as db:
        col = db.create_collection("c", payload_indexes={"year": "range"}, **OPTS)
        _fill(col, 700)
        manifest = (tmp_path / "db/collections/c/MANIFEST").read_bytes()
        with pytest.raises(error, match=message):
            call(col)
        assert isinstance(error("x"), (InvalidArgumentError, NotFoundError))
        assert col.describe()["payload_indexes"] == {"year": "range"}
        assert (tmp_path / "db/collections/c/MANIFEST").read_bytes() == manifest


def test_durable_memory_mapped_after_reopen_and_read_only_refused(tmp_path):
    with shoal.Database(tmp_path / "db", flush_rows=400) as db:
        col = db.create_collection("c", **OPTS)
        _fill(col, 1500)
        col.delete(list(range(0, 1500, 4)))
        col.create_payload_index("tag", "keyword")
        want = {str(f): col.count(f) for f in FILTERS}
        with shoal.Database(tmp_path / "db", read_only=True) as reader:
            with pytest.raises(ReadOnlyError):
                reader.get_collection("c").create_payload_index("year", "range")
    with shoal.Database(tmp_path / "db") as db:
        col = db.get_collection("c")
        assert col.describe()["payload_indexes"] == {"tag": "keyword"}
        sealed = _segments(col)
        assert sealed and all(isinstance(s.payload_indexes.by_field["tag"].rows, np.memmap) or
                              isinstance(s.payload_indexes.by_field["tag"].rows.base, np.memmap) for s in sealed)
        assert {str(f): col.count(f) for f in FILTERS} == want
        col.drop_payload_index("tag")
    with shoal.Database(tmp_path / "db") as db:
        col = db.get_collection("c")
        assert col.describe()["payload_indexes"] is None
        assert all(s.payload_indexes is None for s in _segments(col))
        assert {str(f): col.count(f) for f in FILTERS} == want


def test_the_build_holds_no_lock_readers_and_writers_wait_for(monkeypatch):
    col = Collection("c", **OPTS, _flush_rows=500)
    _fill(col, 2000)
    served = []
    build = PayloadIndexes.build.__func__

    def build_beside_others(cls, *args, **kwargs):
        if not served:  # the first segment's build: a search and an upsert from another thread finish meanwhile
            worker = threading.Thread(target=lambda: served.extend(
                [col.search(np.zeros(8, np.float32), k=3, filter={"tag": "t3"}), col.upsert([10**6], np.ones((1, 8)))]))
            worker.start()
            worker.join(timeout=30)
            assert not worker.is_alive(), "a reader or writer waited for the index build"
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(PayloadIndexes, "build", classmethod(build_beside_others))
    col.create_payload_index("tag", "keyword")
    assert len(served) == 2 and col.count({"tag": "t3"}) == sum(1 for i in range(2000) if _payload(i)["tag"] == "t3")


def _prepared(path: Path) -> dict[str, int]:
    with shoal.Database(path, flush_rows=300) as db:
        col = db.create_collection("c", **OPTS)
        _fill(col, 1600)
        col.delete(list(range(0, 1600, 5)))
        return {str(f): col.count(f) for f in FILTERS}


def _child(path: Path, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(CHILD), str(path), "tag", "keyword", str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _wait_for(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdout is not None
    got = proc.stdout.readline().strip()
    while got and got != line:
        got = proc.stdout.readline().strip()
    assert got == line, proc.stderr.read() if proc.stderr else got


@pytest.mark.parametrize("moment", ["side files written", "committed", "random"])
def test_kill_9_during_a_build_leaves_the_index_present_or_absent(tmp_path, moment):
    """kill -9 after the side files are written and before the manifest commit, after the call
    returned, and at a random moment: the collection opens, answers as before, and has the index
    entirely or not at all (uncommitted side files removed by the writable open)."""
    path = tmp_path / "db"
    want = _prepared(path)
    proc = _child(path, 30.0 if moment == "side files written" else 0.0)
    _wait_for(proc, "READY")
    if moment == "random":
        time.sleep(float(np.random.default_rng().uniform(0.0, 0.5)))
    else:
        _wait_for(proc, "WRITTEN" if moment == "side files written" else "DONE")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    side_files = sorted(path.glob("collections/c/seg-*/pidx-*.bin"))
    with shoal.Database(path) as db:
        col = db.get_collection("c")
        declared = col.describe()["payload_indexes"]
        assert declared in (None, {"tag": "keyword"})
        if moment == "side files written":
            assert declared is None and side_files  # written, never committed
        if moment == "committed":
            assert declared == {"tag": "keyword"}
        assert {str(f): col.count(f) for f in FILTERS} == want
        assert all((s.payload_indexes is not None) == (declared is not None) for s in _segments(col))
    left = sorted(path.glob("collections/c/seg-*/pidx-*.bin"))
    assert bool(left) == (declared is not None)  # no orphan side file survives a writable open
    with shoal.Database(path) as db:  # and the declaration can be made again / is still there
        col = db.get_collection("c")
        col.create_payload_index("tag", "keyword")
        assert {str(f): col.count(f) for f in FILTERS} == want


def test_concurrent_declarations_each_start_from_the_last_commit():
    col = Collection("c", **OPTS, _flush_rows=500)
    _fill(col, 1500)
    threads = [threading.Thread(target=col.create_payload_index, args=args)
               for args in (("tag", "keyword"), ("year", "range"), ("g", "range"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert col.describe()["payload_indexes"] == {"g": "range", "tag": "keyword", "year": "range"}
    assert all(set(s.payload_indexes.by_field) == {"g", "tag", "year"} for s in _segments(col))
