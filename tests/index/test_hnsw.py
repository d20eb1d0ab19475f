"""HNSW: recall floors against exact search, filters at every selectivity, deletes, persistence."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine.metrics import reference_distances
from shoal.index import FlatIndex, HNSWIndex, load_index, make_index

#: ef_search at which the recall floors below are documented to hold.
EF = 64


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a) & set(b[b >= 0])) / max(1, (b >= 0).sum()) for a, b in zip(found[:, :k], truth)]))


def exact(x, q, k, metric, allowed=None):
    flat = FlatIndex(x.shape[1], metric)
    flat.add(x, np.arange(x.shape[0]))
    return flat.search(q, k, allowed=allowed)


@pytest.fixture(scope="module")
def glove():
    from shoal.bench.datasets import glove50

    data = glove50(n=20_000, n_test=200)
    index = HNSWIndex(50, "cosine", M=16, ef_construction=100, seed=7)
    index.add(data.train, np.arange(data.train.shape[0]))
    return data, index


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(40, 24)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 40, 6000)] + rng.normal(size=(6000, 24))).astype(np.float32)
    q = (centers[rng.integers(0, 40, 100)] + rng.normal(size=(100, 24))).astype(np.float32)
    return x, q


def test_recall_real_data(glove):
    data, index = glove
    _, truth = exact(data.train, data.test, 10, "cosine")
    _, found = index.search(data.test, 10, params={"ef_search": EF})
    assert recall(found, truth) >= 0.95


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_recall_clustered(clustered, metric):
    x, q = clustered
    index = HNSWIndex(24, metric, M=12, ef_construction=80)
    index.add(x, np.arange(x.shape[0]))
    d, found = index.search(q, 10, params={"ef_search": EF})
    ref_d, truth = exact(x, q, 10, metric)
    assert recall(found, truth) >= 0.95
    hit = found == truth  # where ids agree, distances agree with the exact index
    np.testing.assert_allclose(d[hit], ref_d[hit], rtol=1e-4, atol=1e-4)
    # single-query path equals the batch path
    d1, i1 = index.search(q[0], 10, params={"ef_search": EF})
    np.testing.assert_array_equal(i1[0], found[0])


def test_deterministic_with_seed(clustered):
    x, q = clustered
    a = HNSWIndex(24, "l2", M=8, ef_construction=40, seed=5)
    b = HNSWIndex(24, "l2", M=8, ef_construction=40, seed=5)
    a.add(x[:3000], np.arange(3000))
    b.add(x[:3000], np.arange(3000))
    np.testing.assert_array_equal(a._g0[:3000], b._g0[:3000])
    np.testing.assert_array_equal(a.search(q, 5)[1], b.search(q, 5)[1])


@pytest.mark.parametrize("selectivity", [0.001, 0.01, 0.1, 0.5, 1.0])
def test_filtered_recall_every_selectivity(glove, selectivity):
    data, index = glove
    n = data.train.shape[0]
    rng = np.random.default_rng(int(selectivity * 1000))
    allowed = rng.random(n) < selectivity
    if selectivity == 1.0:
        allowed[:] = True
    _, truth = exact(data.train, data.test, 10, "cosine", allowed=allowed)
    report: dict = {}
    _, found = index.search(data.test, 10, params={"ef_search": EF}, allowed=allowed, report=report)
    assert np.all(allowed[found[found >= 0]])
    # Asked directly, the index walks the graph at any selectivity (the planner sends filters
    # keeping <= 5% to an exact scan: test_collection_default_for_hnsw_spec); a walk that meets
    # fewer than k allowed rows is answered exactly and reported.
    assert recall(found, truth) >= (0.95 if selectivity >= 0.1 else 0.75)
    assert np.all(found[:, 9] >= 0)  # k results whenever k rows match
    if selectivity == 0.001:
        assert report["fallback_queries"] > 0


def test_never_fewer_than_k_when_k_match(clustered):
    x, q = clustered
    index = HNSWIndex(24, "l2", M=8, ef_construction=40)
    index.add(x, np.arange(x.shape[0]))
    allowed = np.zeros(x.shape[0], bool)
    allowed[np.arange(0, x.shape[0], 97)] = True  # ~1%: spread over all clusters
    _, found = index.search(q, 10, allowed=allowed)
    assert np.all(found >= 0) and np.all(allowed[found])
    allowed[:] = False
    allowed[[5, 6, 7]] = True
    d, found = index.search(q[:2], 10, allowed=allowed)
    assert sorted(found[0, :3].tolist()) == [5, 6, 7] and np.all(found[:, 3:] == -1) and np.all(np.isinf(d[:, 3:]))


def test_small_and_degenerate():
    index = HNSWIndex(4, "l2")
    d, i = index.search(np.zeros(4), 3)
    assert np.all(i == -1)
    index.add(np.ones((1, 4)), [42])
    d, i = index.search(np.zeros((2, 4)), 3)
    assert i[:, 0].tolist() == [42, 42] and np.all(i[:, 1:] == -1)
    dup = HNSWIndex(4, "l2", M=4, ef_construction=16)
    dup.add(np.ones((300, 4)), np.arange(300))  # all duplicates
    d, i = dup.search(np.ones(4), 10, params={"ef_search": 50})
    assert np.all(i >= 0) and np.allclose(d, 0) and len(set(i[0].tolist())) == 10


def test_remove_and_deleted_entry_point(clustered):
    x, q = clustered
    index = HNSWIndex(24, "l2", M=8, ef_construction=40)
    index.add(x, np.arange(x.shape[0]))
    entry = index.entry_point
    gone = np.unique(np.concatenate([[entry], np.arange(0, x.shape[0], 3)]))
    index.remove(gone)
    assert len(index) == x.shape[0] - gone.size
    live = np.setdiff1d(np.arange(x.shape[0]), gone)
    _, found = index.search(q, 10, params={"ef_search": EF})
    assert not np.isin(found, gone).any()
    _, truth = exact(x[live], q, 10, "l2")
    assert recall(found, live[truth]) >= 0.95


def test_incremental_add_and_upsert(clustered):
    x, q = clustered
    index = HNSWIndex(24, "l2", M=8, ef_construction=40)
    index.add(x[:3000], np.arange(3000))
    index.add(x[3000:], np.arange(3000, x.shape[0]))
    _, found = index.search(q, 10, params={"ef_search": EF})
    _, truth = exact(x, q, 10, "l2")
    assert recall(found, truth) >= 0.95
    index.add(q[:1], [17])  # move id 17 onto the first query
    _, i = index.search(q[0], 1)
    assert i[0, 0] == 17 and len(index) == x.shape[0]


def test_save_load_identical(tmp_path, clustered):
    x, q = clustered
    index = make_index("HNSW8", 24, "cosine", ef_construction=40)
    index.add(x, np.arange(x.shape[0]))
    index.remove([1, 2, 3])
    path = tmp_path / "h.idx"
    index.save(path)
    loaded = load_index(path)
    assert isinstance(loaded, HNSWIndex) and loaded.M == 8 and isinstance(loaded._g0, np.memmap)
    (d, i), (dl, il) = index.search(q, 10), loaded.search(q, 10)
    np.testing.assert_array_equal(i, il)
    # kernels compiled for read-only (memory-mapped) arrays may sum a distance in another order
    np.testing.assert_allclose(d, dl, rtol=1e-5, atol=1e-6)
    loaded.add(x[:5] + 1, np.arange(10_000, 10_005))  # a memory-mapped graph still grows
    assert len(loaded) == len(index) + 5


def test_collection_default_for_hnsw_spec(glove):
    data, _ = glove
    db = shoal.Database()
    # 20k rows scan faster than the graph by the planner's cost model: weigh the index's cost out
    # (index_cost_factor 0) so the graph serves all but the 1,000-row-or-smaller filters
    col = db.create_collection("g", dim=50, metric="cosine", index="hnsw", ef_construction=100,
                               planner={"exact_max_rows": 1000, "index_cost_factor": 0.0})
    assert col.index_spec == "hnsw"
    col.upsert(np.arange(data.train.shape[0]), data.train,
               [{"bucket": i % 100} for i in range(data.train.shape[0])])
    assert col.explain(data.test[0])[0]["path"] == "exact"  # the growing segment has no index yet
    col.optimize()
    assert [p["path"] for p in col.explain(data.test[0])] == ["index"]
    _, truth = exact(data.train, data.test, 10, "cosine")
    res = col.search(data.test, k=10, params={"ef_search": EF})
    assert recall(np.array([r.ids for r in res]), truth) >= 0.95
    # 50% selectivity goes through the graph with the mask pushed into the kernel
    allowed = np.arange(data.train.shape[0]) % 100 < 50
    _, truth_f = exact(data.train, data.test, 10, "cosine", allowed=allowed)
    res = col.search(data.test, k=10, filter={"bucket": {"$lt": 50}}, params={"ef_search": EF}, explain=True)
    assert recall(np.array([r.ids for r in res]), truth_f) >= 0.95
    assert res[0].plan[0]["path"] == "filtered-index" and res[0].plan[0]["params"] == {"ef_search": EF}
    # 1% selectivity: the planner picks exact search over the matching rows
    rare = np.arange(data.train.shape[0]) % 100 == 0
    _, truth_r = exact(data.train, data.test, 10, "cosine", allowed=rare)
    res = col.search(data.test, k=10, filter={"bucket": 0}, params={"ef_search": EF}, explain=True)
    np.testing.assert_array_equal(np.array([r.ids for r in res]), truth_r)
    assert res[0].plan[0]["path"] == "exact"
    with pytest.raises(shoal.InvalidArgumentError):
        col.search(data.test[0], k=3, params={"ef_search": 0})


def test_bad_parameters():
    with pytest.raises(shoal.InvalidArgumentError):
        HNSWIndex(4, "l2", M=1)
    with pytest.raises(shoal.InvalidArgumentError, match="unknown search parameter"):
        HNSWIndex(4, "l2").search(np.zeros(4), 1, params={"nprobe": 3})


def test_alternating_single_and_batch_queries_keep_scratch_bounded(clustered):
    """Switching between serial (1 thread) and parallel searches must not regrow scratch memory."""
    x, q = clustered
    index = HNSWIndex(24, "l2", M=8, ef_construction=40)
    index.add(x, np.arange(x.shape[0]))
    for _ in range(5):
        index.search(q[0], 5)
        index.search(q[:10], 5)
    scratch = [vis for pool in index._scratch.values() for vis in pool]
    assert len(scratch) <= 3 and all(vis.shape[1] <= 2 * x.shape[0] + 1 for vis in scratch)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_single_query_path_matches_batch_and_exact_distances(clustered, metric):
    """One-query calls normalise, map labels and shift cosine distances inside the kernel."""
    x, q = clustered
    labels = np.arange(x.shape[0]) * 7 + 1000  # sparse labels: ids are not rows
    index = HNSWIndex(24, metric, M=8, ef_construction=40)
    index.add(x, labels)
    q = np.vstack([q[:20] * 5.0, np.zeros((1, 24), np.float32)])  # unnormalised rows and a zero row
    d_batch, i_batch = index.search(q, 5)
    for row in range(q.shape[0]):
        d, i = index.search(q[row], 5)
        np.testing.assert_array_equal(i[0], i_batch[row])
        np.testing.assert_allclose(d[0], d_batch[row], rtol=1e-6, atol=1e-6)
    for row in range(q.shape[0]):  # distances are the metric's own (1 - cos for cosine), per returned id
        want = reference_distances(q[row:row + 1], x[(i_batch[row] - 1000) // 7], metric)[0]
        np.testing.assert_allclose(d_batch[row], want, rtol=1e-4, atol=1e-4)
