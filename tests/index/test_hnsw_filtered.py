"""HNSW's filtered and fallback paths, small and fast (they guard index/hnsw.py in ``make mutation``).

A walk through a filter holds only allowed nodes; when it meets fewer than k of them, or the beam
is wider than ``GRAPH_MAX_EF``, the index answers those queries exactly over the allowed rows and
reports them as ``fallback_queries``. Every answer here is checked against brute force over the
rows that are allowed *and* live.
"""
from __future__ import annotations

import numpy as np
import pytest

from shoal.index import HNSWIndex
from shoal.index.hnsw import GRAPH_MAX_EF, GRAPH_ROW_COST
from tests.conftest import assert_knn_equal, brute_force

N, DIM, K = 2000, 16, 10


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(20, DIM)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 20, N)] + rng.normal(size=(N, DIM))).astype(np.float32)
    q = (centers[rng.integers(0, 20, 24)] + rng.normal(size=(24, DIM))).astype(np.float32)
    return x, q


@pytest.fixture(scope="module", params=["l2", "cosine"])
def built(request: pytest.FixtureRequest, data: tuple) -> tuple[HNSWIndex, np.ndarray, np.ndarray, str]:
    x, q = data
    index = HNSWIndex(DIM, request.param, M=8, ef_construction=40, seed=3)
    index.add(x, np.arange(N) + 100)  # labels differ from rows: the kernels must map them
    return index, x, q, request.param


def allowed_mask(rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(N + 100, bool)
    mask[rows + 100] = True
    return mask


def reference(x: np.ndarray, q: np.ndarray, rows: np.ndarray, metric: str, k: int = K):
    return brute_force(q, x[rows], k, metric, labels=rows + 100)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.tolist(), truth.tolist())]))


def test_few_allowed_rows_fall_back_to_exact_over_them(built: tuple) -> None:
    index, x, q, metric = built
    rows = np.arange(3, N, 250)  # 8 allowed rows, far apart in the graph
    report: dict = {}
    d, i = index.search(q, K, params={"ef_search": 16}, allowed=allowed_mask(rows), report=report)
    ref_d, ref_i = reference(x, q, rows, metric, k=len(rows))
    assert_knn_equal(d[:, :len(rows)], i[:, :len(rows)], ref_d, ref_i, atol=1e-4)
    assert np.all(i[:, len(rows):] == -1) and np.all(np.isinf(d[:, len(rows):]))  # padded, never others
    assert 0 < report["fallback_queries"] <= q.shape[0]


def test_a_walk_that_finds_k_allowed_rows_is_not_a_fallback(built: tuple) -> None:
    index, x, q, metric = built
    rows = np.arange(0, N, 2)
    report: dict = {}
    d, i = index.search(q, K, params={"ef_search": 64}, allowed=allowed_mask(rows), report=report)
    assert report.get("fallback_queries", 0) == 0
    assert np.all(np.isin(i, rows + 100))
    ref_d, ref_i = reference(x, q, rows, metric)
    assert recall(i, ref_i) >= 0.9
    hit = i == ref_i  # where the ids agree, so do the distances
    np.testing.assert_allclose(d[hit], ref_d[hit], rtol=1e-4, atol=1e-4)


def test_a_beam_wider_than_the_graph_limit_is_answered_exactly(built: tuple) -> None:
    index, x, q, metric = built
    rows = np.arange(1, N, 3)
    for allowed, live in ((allowed_mask(rows), rows), (None, np.arange(N))):
        report: dict = {}
        d, i = index.search(q[:5], K, params={"ef_search": GRAPH_MAX_EF + 1}, allowed=allowed, report=report)
        assert report["fallback_queries"] == 5
        assert_knn_equal(d, i, *reference(x, q[:5], live, metric), atol=1e-4)
    report = {}
    index.search(q[:5], K, params={"ef_search": GRAPH_MAX_EF}, report=report)
    assert report.get("fallback_queries", 0) == 0  # at the limit the graph still walks


def test_deleted_rows_are_masked_without_a_filter(data: tuple) -> None:
    x, q = data
    index = HNSWIndex(DIM, "l2", M=8, ef_construction=40, seed=3)
    index.add(x, np.arange(N))
    gone = np.arange(0, N, 2)
    index.remove(gone)
    live = np.setdiff1d(np.arange(N), gone)
    _, i = index.search(q, K, params={"ef_search": 64})
    assert not np.isin(i, gone).any() and np.all(i >= 0)
    assert recall(i, brute_force(q, x[live], K, "l2", labels=live)[1]) >= 0.9
    index.remove(live[7:])  # 7 live rows: walks come up short, the fallback covers only live rows
    report: dict = {}
    d, i = index.search(q, K, params={"ef_search": 16}, report=report)
    ref_d, ref_i = brute_force(q, x[live[:7]], 7, "l2", labels=live[:7])
    assert_knn_equal(d[:, :7], i[:, :7], ref_d, ref_i, atol=1e-4)
    assert np.all(i[:, 7:] == -1) and report["fallback_queries"] > 0
    index.remove(live[:7])
    d, i = index.search(q[:2], K)
    assert np.all(i == -1) and np.all(np.isinf(d))


def test_single_query_and_batch_agree_through_a_filter(built: tuple) -> None:
    index, x, q, metric = built
    allowed = allowed_mask(np.arange(0, N, 5))
    batch = index.search(q[:6], K, params={"ef_search": 48}, allowed=allowed)
    for r in range(6):
        d, i = index.search(q[r], K, params={"ef_search": 48}, allowed=allowed)
        np.testing.assert_array_equal(i[0], batch[1][r])
        np.testing.assert_allclose(d[0], batch[0][r], rtol=1e-5, atol=1e-5)


def test_search_cost_model() -> None:
    index = HNSWIndex(DIM, "l2", M=8, ef_search=40)
    assert index.search_cost(1000, 1000, 10, {}) == pytest.approx(GRAPH_ROW_COST * 40 * 8)
    assert index.search_cost(1000, 250, 10, {}) == pytest.approx(GRAPH_ROW_COST * 40 * 8 * 4)  # 1/s more steps
    assert index.search_cost(1000, 1000, 10, {"ef_search": 100}) == pytest.approx(GRAPH_ROW_COST * 100 * 8)
    assert index.search_cost(1000, 1000, 64, {}) == pytest.approx(GRAPH_ROW_COST * 64 * 8)  # the beam holds k
    assert index.search_cost(1000, 0, 10, {}) == pytest.approx(GRAPH_ROW_COST * 40 * 8 * 1000)  # no divide by 0


def test_a_walk_that_finds_every_allowed_row_is_not_a_fallback(data: tuple) -> None:
    """Fewer than k rows allowed, all found by the walk (label 0 among them): answered by the graph."""
    x, q = data
    index = HNSWIndex(DIM, "l2", M=8, ef_construction=40, seed=3)
    index.add(x, np.arange(N))  # labels from 0
    near = brute_force(x[:1], x, 5, "l2")[1][0]  # row 0 and its 4 nearest neighbours
    allowed = np.zeros(N, bool)
    allowed[near] = True
    report: dict = {}
    _, i = index.search(x[:1], K, params={"ef_search": 64}, allowed=allowed, report=report)
    assert sorted(i[0, :5].tolist()) == sorted(near.tolist()) and np.all(i[0, 5:] == -1)
    assert report.get("fallback_queries", 0) == 0


def test_empty_and_single_row_graphs(data: tuple) -> None:
    x, q = data
    index = HNSWIndex(DIM, "l2", M=8, ef_construction=40)
    d, i = index.search(q[:3], K)
    assert i.shape == d.shape == (3, K) and np.all(i == -1) and np.all(np.isinf(d))
    index.add(x[:2], [7, 8])
    index.remove([8])  # one live row
    d, i = index.search(q[:3], K, allowed=np.ones(9, bool))
    assert np.all(i[:, 0] == 7) and np.all(i[:, 1:] == -1)
    np.testing.assert_allclose(d[:, 0], ((q[:3] - x[0]) ** 2).sum(1), rtol=1e-4)


def test_the_walk_on_in_graph_codes_through_a_filter(data: tuple) -> None:
    """``codes="sq8"``: the walk reads 8-bit codes next to each adjacency list and re-ranks in float;
    through a filter it returns only allowed rows, at the float walk's recall, with exact distances."""
    x, q = data
    index = HNSWIndex(DIM, "l2", M=8, ef_construction=40, seed=3, codes="sq8")
    index.add(x, np.arange(N) + 100)
    rows = np.arange(0, N, 2)
    d, i = index.search(q, K, params={"ef_search": 64}, allowed=allowed_mask(rows))
    ref_d, ref_i = reference(x, q, rows, "l2")
    assert np.all(np.isin(i, rows + 100)) and recall(i, ref_i) >= 0.85
    exact = ((q[:, None, :] - x[i - 100]) ** 2).sum(-1)  # re-ranked: the returned distances are exact
    np.testing.assert_allclose(d, exact, rtol=1e-4, atol=1e-4)
    few = np.arange(3, N, 250)  # 8 allowed rows: the fallback, as on floats
    report: dict = {}
    d, i = index.search(q, K, params={"ef_search": 16}, allowed=allowed_mask(few), report=report)
    assert_knn_equal(d[:, :8], i[:, :8], *reference(x, q, few, "l2", k=8), atol=1e-4)
    assert report["fallback_queries"] > 0


def test_one_allowed_row_is_found_by_every_path(built: tuple) -> None:
    """One allowed row: the walk, its fallback and the wide-beam exact path all return it, then padding."""
    index, x, q, metric = built
    rows = np.array([777])
    ref_d, _ = reference(x, q[:4], rows, metric, k=1)
    for ef in (16, GRAPH_MAX_EF + 1):
        d, i = index.search(q[:4], K, params={"ef_search": ef}, allowed=allowed_mask(rows))
        assert np.all(i[:, 0] == 877) and np.all(i[:, 1:] == -1) and np.all(np.isinf(d[:, 1:]))
        np.testing.assert_allclose(d[:, :1], ref_d, rtol=1e-4, atol=1e-4)


def test_no_allowed_row_pads_every_query(built: tuple) -> None:
    index, _, q, _ = built
    for ef in (16, GRAPH_MAX_EF + 1):
        d, i = index.search(q[:3], K, params={"ef_search": ef}, allowed=allowed_mask(np.array([], np.int64)))
        assert i.shape == d.shape == (3, K) and np.all(i == -1) and np.all(np.isinf(d))


def test_the_fallback_reruns_exactly_the_queries_that_came_up_short(built: tuple) -> None:
    """``_fall_back`` given a walk's output: a query is answered again exactly when it found fewer
    than min(k, allowed rows) rows, even when only its last slot is empty; the others keep the walk's
    answer, and the report counts exactly the queries re-run (added to an earlier count)."""
    index, x, q, metric = built
    rows = np.arange(5, N, 40)  # 50 allowed rows (>= k)
    mask = index._table.row_mask(allowed_mask(rows))
    walk_d = np.tile(np.arange(K, dtype=np.float32), (4, 1))  # a stand-in walk result (never exact)
    walk_i = np.tile(np.arange(K, dtype=np.int64) + 5000, (4, 1))
    walk_i[1, K - 1] = -1  # k - 1 rows found
    walk_i[2, 3:] = -1  # 3 rows found
    walk_i[3, :] = -1  # none found
    out_d, out_i = walk_d.copy(), walk_i.copy()
    report = {"fallback_queries": 2}
    index._fall_back(q[:4], K, mask, out_d, out_i, report)
    assert report["fallback_queries"] == 2 + 3
    np.testing.assert_array_equal(out_i[0], walk_i[0])  # a full answer is kept as it is
    np.testing.assert_array_equal(out_d[0], walk_d[0])
    assert_knn_equal(out_d[1:], out_i[1:], *reference(x, q[1:4], rows, metric), atol=1e-4)
    # fewer than k rows allowed: a walk that found all of them stands; one that missed any is re-run
    few = rows[:6]
    mask = index._table.row_mask(allowed_mask(few))
    out_d, out_i = walk_d.copy(), walk_i.copy()
    out_i[:, 6:] = -1
    out_i[1, 5] = -1  # 5 of the 6 allowed rows
    report = {}
    index._fall_back(q[:4], K, mask, out_d, out_i, report)
    assert report == {"fallback_queries": 3}
    np.testing.assert_array_equal(out_i[0, :6], walk_i[0, :6])
    assert_knn_equal(out_d[1:, :6], out_i[1:, :6], *reference(x, q[1:4], few, metric, k=6), atol=1e-4)
    out_i = walk_i.copy()
    out_i[1:] = np.tile(np.arange(K) + 5000, (3, 1))  # every slot filled: nothing to re-run, nothing counted
    report = {}
    index._fall_back(q[:4], K, index._table.row_mask(allowed_mask(rows)), walk_d.copy(), out_i, report)
    assert report == {} and np.all(out_i == np.arange(K) + 5000)


def test_an_exact_answer_over_no_rows_is_padding(built: tuple) -> None:
    index, _, q, _ = built
    d, i = index._exact(q[:3], K, np.zeros(index._table.size, bool))
    assert i.shape == d.shape == (3, K) and np.all(i == -1) and np.all(np.isinf(d))
