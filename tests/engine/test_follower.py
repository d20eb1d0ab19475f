"""FollowerDatabase: a read-only copy that sees the writer's acknowledged writes on its next lookup."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine import errors
from shoal.engine.follower import FollowerDatabase


def rows(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_follower_sees_upserts_deletes_seals_and_merges(tmp_path) -> None:
    with shoal.Database(tmp_path, flush_rows=50) as db:
        col = db.create_collection("c", dim=4, metric="l2")
        col.upsert(list(range(10)), rows(10), [{"i": i} for i in range(10)])
        follower = FollowerDatabase(tmp_path)
        assert follower.get_collection("c").count() == 10
        col.upsert([10, 11], rows(2, seed=1), [{"i": 10}, {"i": 11}])  # appended to the same log
        col.delete([0])
        seen = follower.get_collection("c")
        assert seen.count() == 11 and not seen.exists([0])[0] and seen.get([11]).metadata == [{"i": 11}]
        x = rows(60, seed=2)
        col.upsert(list(range(100, 160)), x)  # passes flush_rows: a seal (new manifest, new log)
        seen = follower.get_collection("c")
        assert seen.count() == 71
        hit = seen.search(x[5], k=1)
        assert hit.ids == [105]
        col.upsert([105], rows(1, seed=3), [{"moved": True}])  # replaces a sealed row: a delete replayed on it
        assert follower.get_collection("c").get([105]).metadata == [{"moved": True}]
        assert follower.get_collection("c").count() == 71
        col.compact()
        assert follower.get_collection("c").count() == 71
        follower.close()


def test_follower_sees_collections_come_and_go(tmp_path) -> None:
    with shoal.Database(tmp_path) as db:
        db.create_collection("a", dim=2)
        follower = FollowerDatabase(tmp_path)
        assert follower.list_collections() == ["a"]
        db.create_collection("b", dim=3).upsert([1], np.ones((1, 3)))
        assert follower.list_collections() == ["a", "b"] and follower.get_collection("b").count() == 1
        db.rename_collection("b", "c")
        assert follower.list_collections() == ["a", "c"] and follower.get_collection("c").count() == 1
        db.drop_collection("a")
        with pytest.raises(errors.CollectionNotFoundError):
            follower.get_collection("a")
        with pytest.raises(errors.ReadOnlyError):
            follower.create_collection("d", dim=2)
        follower.close()


def test_handles_given_out_keep_answering_after_a_reopen(tmp_path) -> None:
    """A search holding the old Collection is never cut off by a catch-up that reopened it."""
    with shoal.Database(tmp_path, flush_rows=5) as db:
        col = db.create_collection("c", dim=4, metric="l2")
        col.upsert(list(range(3)), rows(3))
        follower = FollowerDatabase(tmp_path)
        old = follower.get_collection("c")
        col.upsert(list(range(3, 10)), rows(7, seed=1))  # seals
        new = follower.get_collection("c")
        assert new is not old and new.count() == 10
        assert old.count() == 3 and len(old.search(rows(1)[0], k=2).ids) == 2
        follower.close()
