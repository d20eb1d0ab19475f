"""The id tracker directly (fast; it guards engine/id_tracker.py in ``make mutation``): int64 ids in
the Numba table across its growth and tombstones, every other id in the dict, the int64 boundary,
and the error that names missing ids."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import IdNotFoundError
from shoal.engine.id_tracker import _INITIAL_SLOTS, IdTracker, _IntMap, split_ids
from shoal.engine.segment_ids import SegmentIds

LO, HI = -2**63, 2**63 - 1


def test_split_ids_at_the_int64_boundary() -> None:
    pos, keys, other = split_ids([1, -5, 7])
    assert pos.tolist() == [0, 1, 2] and keys.tolist() == [1, -5, 7] and other == []
    assert keys.dtype == np.int64 and pos.dtype == np.int64
    ids = [LO, HI, 2**63, LO - 1, "a", 3, True]  # one past each end is not int64; a bool is not an int id
    pos, keys, other = split_ids(ids)
    assert pos.tolist() == [0, 1, 5] and keys.tolist() == [LO, HI, 3] and other == [2, 3, 4, 6]
    pos, keys, other = split_ids(["x", "y"])
    assert pos.size == 0 and keys.size == 0 and other == [0, 1]
    assert [a.size for a in split_ids([])[:2]] == [0, 0]


def test_int_map_grows_and_reuses_tombstones() -> None:
    m = _IntMap()
    assert m.keys.shape[0] == _INITIAL_SLOTS and m.count == 0
    keys = np.arange(0, 3000, 3, dtype=np.int64)  # 1000 keys: more than half of 1024 slots
    m.insert(keys[:512], keys[:512] + 1)
    assert m.keys.shape[0] == _INITIAL_SLOTS  # exactly half full: no growth yet
    m.insert(keys[512:], keys[512:] + 1)
    assert m.count == 1000 and m.keys.shape[0] == 2048  # next power of two above 2 x 1000
    assert m.lookup(keys).tolist() == (keys + 1).tolist()
    assert m.lookup(keys + 1).tolist() == [-1] * 1000  # absent keys (between the stored ones)
    m.insert(keys[:10], keys[:10] * 7)  # overwrite: no key added
    assert m.count == 1000 and m.lookup(keys[:10]).tolist() == (keys[:10] * 7).tolist()
    m.remove(keys[:100])
    m.remove(keys[:100])  # absent now: ignored
    assert m.count == 900 and m.tombstones == 100
    assert m.lookup(keys[:100]).tolist() == [-1] * 100 and m.lookup(keys[100:]).tolist() == (keys[100:] + 1).tolist()
    m.insert(keys[:100], keys[:100])  # back into tombstone slots
    assert m.count == 1000 and m.tombstones < 100
    stored_keys, stored_values = m.items()
    assert sorted(stored_keys.tolist()) == keys.tolist()
    assert dict(zip(stored_keys.tolist(), stored_values.tolist()))[keys[5]] == keys[5]


def test_tombstones_count_toward_the_load() -> None:
    """Removes leave tombstones that lengthen probes: live + tombstones stays at most half the table."""
    m = _IntMap()
    for start in range(0, 20_000, 400):  # churn: insert 400, remove them
        batch = np.arange(start, start + 400, dtype=np.int64)
        m.insert(batch, batch)
        assert 2 * (m.count + m.tombstones) <= m.keys.shape[0]
        m.remove(batch)
    assert m.count == 0 and m.keys.shape[0] <= 4 * _INITIAL_SLOTS  # rehashing drops tombstones
    m.insert(np.array([5], np.int64), np.array([50], np.int64))
    assert m.lookup(np.array([5, 6], np.int64)).tolist() == [50, -1]


def test_tracker_mixes_int_and_other_ids() -> None:
    t = IdTracker()
    ids = [0, "a", 2**64, -1, "b"]
    t.assign(ids, [0, 10, 20, 30, 40])
    assert len(t) == 5 and sorted(map(str, t)) == sorted(map(str, ids))
    assert t.get(0) == 0 and t.get("a") == 10 and t.get(2**64) == 20 and t.get(-1) == 30
    assert t.get(1) is None and t.get("zz") is None and 0 in t and 1 not in t
    assert t.lookup([-1, "b", 7, 2**64, "zz", 2**65]).tolist() == [30, 40, -1, 20, -1, -1]  # -1: absent
    assert t.present(iter([7, "a", 0, "c"])) == ["a", 0]
    assert t.internal_of(["b", 0], "here").tolist() == [40, 0]
    t.forget(["a", 0])
    assert len(t) == 3 and t.get("a") is None and t.get(0) is None and "b" in t
    t.assign(iter([0]), np.array([5]))
    assert t.get(0) == 5 and len(t) == 4


def test_missing_ids_are_named_up_to_ten() -> None:
    t = IdTracker()
    t.assign([1, 2], [1, 2])
    with pytest.raises(IdNotFoundError, match=r"ids not found in collection 'c': \[3, 'x'\]$"):
        t.internal_of([1, 3, "x"], "collection 'c'")
    t.assign([7], [0])  # internal id 0 is found, not missing
    with pytest.raises(IdNotFoundError, match=r"ids not found in c: \[3\]$"):
        t.internal_of([7, 3], "c")
    missing = list(range(100, 111))
    with pytest.raises(IdNotFoundError) as info:
        t.internal_of(missing, "c")
    assert str(info.value) == f"ids not found in c: {missing[:10]} (and 1 more)"
    with pytest.raises(IdNotFoundError) as info:
        t.internal_of(missing[:10], "c")
    assert str(info.value) == f"ids not found in c: {missing[:10]}"


def test_assign_rows_points_a_segments_live_ids_at_base_plus_row() -> None:
    seg = SegmentIds()
    seg.extend([7, "s", 9, "t", 11])
    seg.kill(np.array([2]))
    t = IdTracker()
    base = 3 << 32
    t.assign_rows(seg, np.array([0, 1, 3, 4]), base)
    assert t.lookup([7, "s", "t", 11, 9]).tolist() == [base, base + 1, base + 3, base + 4, -1]
    assert len(t) == 4


def test_reserve_makes_room_for_every_id_at_once():
    """Opening a collection reserves the table for all its segments' ids: no rehash per segment."""
    tracker = IdTracker()
    tracker.reserve(5000)
    slots = tracker._ints.keys.shape[0]
    assert slots >= 10000
    for start in range(0, 5000, 1000):
        tracker.assign(list(range(start, start + 1000)), np.arange(start, start + 1000))
    assert tracker._ints.keys.shape[0] == slots and len(tracker) == 5000
    assert tracker.lookup([0, 4999, 5000]).tolist() == [0, 4999, -1]
