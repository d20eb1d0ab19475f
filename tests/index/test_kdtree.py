"""KDTreeIndex: exact equality with brute force on awkward data, filters, radius, updates, persistence."""
from __future__ import annotations

import numpy as np
import pytest

from shoal import InvalidArgumentError
from shoal.engine.collection import Collection
from shoal.engine.metrics import reference_distances
from shoal.index import FlatIndex, KDTreeIndex, load_index, make_index
from shoal.index import kdtree as kdtree_module
from shoal.index.factory import auto_spec
from shoal.index.kernels.kdtree_numba import count_nodes
from tests.conftest import assert_knn_equal, brute_force


def _tree(x: np.ndarray, metric: str = "l2", leaf_size: int = 8, ids: np.ndarray | None = None) -> KDTreeIndex:
    index = KDTreeIndex(x.shape[1], metric, leaf_size=leaf_size)
    index.add(x, np.arange(x.shape[0]) if ids is None else ids)
    index.build()
    return index


def _assert_exact(d: np.ndarray, i: np.ndarray, q: np.ndarray, x: np.ndarray, metric: str,
                  labels: np.ndarray | None = None, atol: float = 1e-5) -> None:
    """Same distances as brute force, and every returned id really is at its distance.

    Unlike ``assert_knn_equal`` this accepts any member of a tie group that extends past rank k
    (duplicates normalised to float32 differ in the last bit, so float64 ties are not float32 ties).
    """
    labels = np.arange(x.shape[0]) if labels is None else labels
    ref = reference_distances(q, x, metric)
    k = min(d.shape[1], x.shape[0])
    np.testing.assert_allclose(d[:, :k], np.sort(ref, axis=1)[:, :k], atol=atol, rtol=1e-5)
    row_of = {lab: r for r, lab in enumerate(labels.tolist())}
    for r in range(q.shape[0]):
        got = i[r, :k]
        assert np.unique(got).size == k and (got >= 0).all()
        np.testing.assert_allclose(d[r, :k], ref[r, [row_of[g] for g in got.tolist()]], atol=atol, rtol=1e-5)


def _datasets(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    centers = rng.normal(scale=10, size=(5, 4))
    clustered = (centers[rng.integers(0, 5, 1500)] + rng.normal(scale=0.05, size=(1500, 4))).astype(np.float32)
    grid = rng.integers(0, 3, size=(1200, 3)).astype(np.float32)  # heavy duplicates, exact ties
    skewed = np.exp(rng.normal(scale=3, size=(1000, 2))).astype(np.float32)
    return {
        "random": (rng.normal(size=(2000, 5)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)),
        "clustered": (clustered, clustered[:30] + np.float32(0.01)),
        "duplicates": (grid, rng.integers(0, 3, size=(30, 3)).astype(np.float32)),
        "skewed": (skewed, skewed[:20] * np.float32(1.5)),
        "identical": (np.ones((300, 3), np.float32), rng.normal(size=(10, 3)).astype(np.float32)),
        "one-dim": (rng.normal(size=(500, 1)).astype(np.float32), rng.normal(size=(25, 1)).astype(np.float32)),
        "n=1": (np.array([[1.0, 2.0]], np.float32), rng.normal(size=(5, 2)).astype(np.float32)),
        "zero rows": (np.where(rng.random((400, 1)) < 0.2, 0, rng.normal(size=(400, 3))).astype(np.float32),
                      np.vstack([np.zeros((1, 3)), rng.normal(size=(9, 3))]).astype(np.float32)),
    }


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_equals_brute_force(metric, rng):
    for name, (x, q) in _datasets(rng).items():
        for k in (1, 7, x.shape[0] + 3):  # the last one is n < k: padded with inf / -1
            d, i = _tree(x, metric).search(q, k)
            _assert_exact(d, i, q, x, metric)
            assert (i[:, x.shape[0]:] == -1).all() and np.isinf(d[:, x.shape[0]:]).all(), name


def test_exact_ties_match_flat_ids(rng):
    """Integer data: distances are exact in both engines, so ids must match exactly (ties -> lower id)."""
    x = rng.integers(0, 3, size=(1500, 3)).astype(np.float32)
    q = rng.integers(0, 3, size=(50, 3)).astype(np.float32)
    labels = rng.permutation(5000)[:1500]
    flat = FlatIndex(3)
    flat.add(x, labels)
    d, i = _tree(x, ids=labels).search(q, 25)
    fd, fi = flat.search(q, 25)
    np.testing.assert_array_equal(i, fi)
    np.testing.assert_array_equal(d, fd)


def test_radius_search_complete(rng):
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    q = rng.normal(size=(20, 3)).astype(np.float32)
    index = _tree(x)
    for radius in (0.05, 0.3, 1e9):
        lims, d, i = index.range_search(q, radius)
        ref = ((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
        for r in range(q.shape[0]):
            want = np.flatnonzero(ref[r] < radius)
            got = i[lims[r]:lims[r + 1]]
            np.testing.assert_array_equal(np.sort(got), want)
            dr = d[lims[r]:lims[r + 1]]
            assert np.all(np.diff(dr) >= 0)
            np.testing.assert_allclose(dr, ref[r, got], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_filtered_search_is_exact(metric, rng):
    x = rng.normal(size=(2500, 4)).astype(np.float32)
    q = rng.normal(size=(30, 4)).astype(np.float32)
    index = _tree(x, metric)
    for keep in (0.5, 0.01, 3 / 2500):
        allowed = rng.random(2500) < keep
        rows = np.flatnonzero(allowed)
        d, i = index.search(q, 5, allowed=allowed)
        _assert_exact(d, i, q, x[rows], metric, labels=rows)
        lims, _, ri = index.range_search(q, 0.5, allowed=allowed)
        assert np.isin(ri, rows).all()
    d, i = index.search(q, 3, allowed=np.zeros(2500, bool))
    assert (i == -1).all() and np.isinf(d).all()


def test_add_remove_buffer_and_rebuild(rng, monkeypatch):
    monkeypatch.setattr(kdtree_module, "REBUILD_MIN_BUFFER", 100)
    x = rng.normal(size=(3000, 3)).astype(np.float32)
    q = rng.normal(size=(20, 3)).astype(np.float32)
    index = _tree(x[:1000])
    index.add(x[1000:1050], np.arange(1000, 1050))  # small: stays in the exactly-scanned buffer
    d, i = index.search(q, 10)
    assert index.buffered == 50
    assert_knn_equal(d, i, *brute_force(q, x[:1050], 10, "l2"))
    index.add(x[1050:], np.arange(1050, 3000))  # large: next search rebuilds
    d, i = index.search(q, 10)
    assert index.buffered == 0
    assert_knn_equal(d, i, *brute_force(q, x, 10, "l2"))
    removed = rng.choice(3000, 500, replace=False)
    assert index.remove(removed) == 500
    keep = np.setdiff1d(np.arange(3000), removed)
    d, i = index.search(q, 10)
    assert not np.isin(i, removed).any()
    assert_knn_equal(d, i, *brute_force(q, x[keep], 10, "l2", labels=keep))
    index.remove(keep[:300])  # past REBUILD_DEAD_FRACTION: compacts on the next search
    keep = keep[300:]
    d, i = index.search(q, 10)
    assert index.ntotal == keep.size == index._data.size  # removed rows were dropped
    assert_knn_equal(d, i, *brute_force(q, x[keep], 10, "l2", labels=keep))
    moved = x[keep[:5]] + np.float32(100)  # upsert moves points far away
    index.add(moved, keep[:5])
    d, i = index.search(moved, 1)
    np.testing.assert_array_equal(i[:, 0], keep[:5])


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_roundtrip(tmp_path, rng, mmap):
    x = rng.normal(size=(1200, 4)).astype(np.float32)
    q = rng.normal(size=(15, 4)).astype(np.float32)
    index = _tree(x, "cosine", leaf_size=5)
    index.remove(np.arange(10))
    index.add(x[:3] * 2, [2000, 2001, 2002])  # buffered rows are saved too
    path = tmp_path / "t.kdt"
    index.save(path)
    loaded = load_index(path, mmap=mmap)
    assert isinstance(loaded, KDTreeIndex) and loaded.leaf_size == 5 and loaded.ntotal == index.ntotal
    for a, b in zip(index.search(q, 8), loaded.search(q, 8)):
        np.testing.assert_array_equal(a, b)
    loaded.add(x[:2], [5000, 5001])  # a memory-mapped index stays writable
    assert loaded.search(x[:1], 1)[1][0, 0] in (0, 2000, 5000)


def test_approximate_max_leaves(rng):
    x = rng.normal(size=(4000, 3)).astype(np.float32)
    q = rng.normal(size=(100, 3)).astype(np.float32)
    index = _tree(x, leaf_size=16)
    _, ref_i = brute_force(q, x, 10, "l2")
    recalls = []
    for leaves in (1, 4, 10_000):
        _, i = index.search(q, 10, params={"max_leaves": leaves})
        recalls.append(np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(i, ref_i)]))
    assert recalls[0] < 1.0 and recalls[0] <= recalls[1] and recalls[2] == 1.0 and recalls[1] >= 0.8
    with pytest.raises(InvalidArgumentError, match="max_leaves"):
        index.search(q, 10, params={"max_leaves": 0})


def test_spec_errors_and_empty():
    assert isinstance(make_index("kdtree", 3), KDTreeIndex)
    assert make_index("KDTree32", 3).leaf_size == 32
    with pytest.raises(InvalidArgumentError, match="ip"):
        KDTreeIndex(3, "ip")
    with pytest.raises(InvalidArgumentError, match="leaf_size"):
        KDTreeIndex(3, leaf_size=0)
    empty = KDTreeIndex(2)
    d, i = empty.search(np.zeros((2, 2)), 3)
    assert (i == -1).all() and np.isinf(d).all()
    assert empty.range_search(np.zeros((2, 2)), 1.0)[0].tolist() == [0, 0, 0]
    assert auto_spec(8, "l2") == "KDTree" and auto_spec(8, "ip") != "KDTree"


def test_count_nodes_matches_build(rng):
    for n in (1, 2, 16, 17, 100, 1001):
        index = _tree(rng.normal(size=(n, 2)).astype(np.float32), leaf_size=4)
        data = index._data
        assert count_nodes(n, 4) == data.start.shape[0]
        leaves = data.right < 0
        assert (data.end - data.start)[leaves].sum() == n and ((data.end - data.start)[leaves] <= 4).all()


@pytest.mark.parametrize("spec", ["kdtree", "auto"])
def test_through_collection(spec, rng):
    x = rng.normal(size=(25_000, 3)).astype(np.float32)  # above the planner's exact-scan threshold
    col = Collection("c", dim=3, metric="l2", index=spec)
    assert col.index_spec.lower() == "kdtree"
    col.upsert(ids=[f"v{j}" for j in range(x.shape[0])], vectors=x,
               metadata=[{"g": j % 10} for j in range(x.shape[0])])
    col.optimize()
    assert isinstance(col._shard.segments[0].index, KDTreeIndex)
    assert [p["path"] for p in col.explain(x[0])] == ["index"]
    q = rng.normal(size=3).astype(np.float32)
    _, ref_i = brute_force(q[None], x, 5, "l2")
    assert col.search(q, k=5).ids == [f"v{j}" for j in ref_i[0]]
    keep = np.flatnonzero(np.arange(x.shape[0]) % 10 != 0)  # 22.5k match: the mask goes into the tree
    _, ref_keep = brute_force(q[None], x[keep], 5, "l2", labels=keep)
    assert col.search(q, k=5, filter={"g": {"$ne": 0}}).ids == [f"v{j}" for j in ref_keep[0]]
