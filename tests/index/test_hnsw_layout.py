"""HNSW layout and build: the parallel linking's graph, breadth-first renumbering for locality."""
from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

from shoal.index import HNSWIndex, load_index
from shoal.index import hnsw as hnsw_module


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(n_samples=5060, n_features=16, centers=30, center_box=(-9.0, 9.0), random_state=21)
    x = x.astype(np.float32)
    return x[:5000], x[5000:]  # 60 held-out queries from the same clusters


def _build(x: np.ndarray, reorder_from: int, monkeypatch: pytest.MonkeyPatch, metric: str = "l2",
           labels: np.ndarray | None = None, codes: str = "auto") -> HNSWIndex:
    monkeypatch.setattr(hnsw_module, "REORDER_MIN_ROWS", reorder_from)
    index = HNSWIndex(x.shape[1], metric, M=8, ef_construction=40, seed=3, codes=codes)
    index.add(x, np.arange(x.shape[0]) if labels is None else labels)
    return index


def _edges(index: HNSWIndex) -> set[tuple[int, int]]:
    """Level-0 edges as (label, label) pairs: what does not change when rows are renumbered."""
    n, labels, links = index._table.size, index._table.labels, index._links
    return {(int(labels[r]), int(labels[v])) for r in range(n) for v in links[r, 1:1 + links[r, 0]]}


@pytest.mark.parametrize("codes", ["none", "sq8"])
def test_graph_is_well_formed_and_independent_of_thread_count(data, monkeypatch, codes):
    """Reverse links are applied row by row in batch order on any number of threads: same graph, whether
    the build walks floats or (``codes="sq8"``) the codes a search walks."""
    x, _ = data
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _build(x, 10**9, monkeypatch, codes=codes)
    finally:
        numba.set_num_threads(before)
    many = _build(x, 10**9, monkeypatch, codes=codes)
    np.testing.assert_array_equal(one._g0[:x.shape[0]], many._g0[:x.shape[0]])
    np.testing.assert_array_equal(one._up[:one._up_used], many._up[:many._up_used])
    links = many._links[:x.shape[0]]
    assert np.all((links[:, 0] >= 1) & (links[:, 0] <= 16))
    indegree = np.zeros(x.shape[0], np.int64)
    for r in range(x.shape[0]):
        nbrs = links[r, 1:1 + links[r, 0]]
        assert np.unique(nbrs).size == nbrs.size and r not in nbrs and np.all(nbrs < x.shape[0])
        indegree[nbrs] += 1
    assert np.mean(indegree == 0) < 0.01  # reverse links were applied: pruning orphans at most a few


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_renumbering_keeps_the_graph_and_every_answer(data, monkeypatch, metric):
    x, q = data
    labels = np.arange(x.shape[0]) * 3 + 7  # sparse labels: rows move, labels stay
    plain = _build(x, 10**9, monkeypatch, metric, labels)
    ordered = _build(x, 1000, monkeypatch, metric, labels)
    assert plain._ordered == 0 and ordered._ordered == x.shape[0]
    assert not np.array_equal(ordered._table.labels, plain._table.labels)
    assert _edges(ordered) == _edges(plain)
    assert ordered.entry_point == plain.entry_point
    for ef in (10, 64):
        d0, i0 = plain.search(q, 10, params={"ef_search": ef})
        d1, i1 = ordered.search(q, 10, params={"ef_search": ef})
        np.testing.assert_array_equal(i1, i0)
        np.testing.assert_allclose(d1, d0, rtol=1e-6, atol=1e-6)
    allowed = labels[x[:, 0] > 0]  # a filter by label reaches the renumbered rows
    _, i0 = plain.search(q, 10, allowed=allowed)
    _, i1 = ordered.search(q, 10, allowed=allowed)
    np.testing.assert_array_equal(i1, i0)


def test_renumbering_puts_neighbours_near(data, monkeypatch):
    x, _ = data
    n = x.shape[0]

    def mean_gap(index: HNSWIndex) -> float:
        links = index._links[:n]
        rows = np.repeat(np.arange(n), links[:, 0])
        nbrs = np.concatenate([links[r, 1:1 + links[r, 0]] for r in range(n)])
        return float(np.abs(rows - nbrs).mean())

    shuffled = x[np.random.default_rng(0).permutation(n)]  # insertion order carries no locality
    assert mean_gap(_build(shuffled, 1000, monkeypatch)) < 0.5 * mean_gap(_build(shuffled, 10**9, monkeypatch))


def test_renumbered_index_grows_removes_saves_and_renumbers_again(tmp_path, data, monkeypatch):
    x, q = data
    index = _build(x[:2000], 1000, monkeypatch)
    assert index._ordered == 2000
    index.add(x[2000:3000], np.arange(2000, 3000))  # 3000 < 2 x 2000: appended, not renumbered
    assert index._ordered == 2000
    index.add(q[:1], [17])  # upsert moves label 17 onto the first query
    index.remove([5, 6])
    index.add(x[3000:], np.arange(3000, x.shape[0]))  # past double: renumbered again, tombstones kept
    assert index._ordered == index._table.size == x.shape[0] + 1
    _, i = index.search(q[0], 1)
    assert i[0, 0] == 17
    _, found = index.search(x[:50], 1, params={"ef_search": 64})
    hit = np.arange(50)
    hit = hit[(hit != 5) & (hit != 6) & (hit != 17)]
    assert np.mean(found[hit, 0] == hit) >= 0.95 and not np.isin(found, [5, 6]).any()
    index.save(tmp_path / "h.idx")  # the version-2 format holds a renumbered graph unchanged
    loaded = load_index(tmp_path / "h.idx")
    np.testing.assert_array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])
    assert loaded._ordered == loaded._table.size


def test_searches_beside_adds_that_renumber(data, monkeypatch):
    """A renumbering holds the write lock: concurrent searches see rows before or after it, never during."""
    x, q = data
    index = _build(x[:1000], 500, monkeypatch)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        try:
            while not stop.is_set():
                for row in q[:20]:
                    d, i = index.search(row, 5)
                    assert np.all(i >= 0) and np.all(i < x.shape[0]) and np.all(np.diff(d[0]) >= 0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=search) for _ in range(4)]
    for w in workers:
        w.start()
    for start in range(1000, x.shape[0], 500):  # renumbers at 2000 and 4000 rows
        index.add(x[start:start + 500], np.arange(start, start + 500))
    stop.set()
    for w in workers:
        w.join()
    assert not errors, errors[0]
    assert index._ordered == 4000 and len(index) == x.shape[0]


def test_a_frozen_filter_mask_is_mapped_onto_renumbered_rows_once(data, monkeypatch):
    """After renumbering, an id-indexed mask must be gathered onto rows (O(n)); the engine's filter
    cache hands read-only masks, so a repeated filter maps once. A writeable mask is mapped per call
    (its owner may change it in place), and a delete invalidates the mapping."""
    x, q = data
    index = _build(x, 1000, monkeypatch)
    assert not index._table._identity  # the rows were renumbered
    table = index._table
    frozen = np.arange(x.shape[0]) % 3 == 0
    frozen.flags.writeable = False
    first = table.row_mask(frozen)
    assert table.row_mask(frozen) is first
    np.testing.assert_array_equal(first, frozen[table.labels[: table.size]])
    writeable = frozen.copy()
    a = table.row_mask(writeable)
    writeable[:] = ~writeable
    np.testing.assert_array_equal(table.row_mask(writeable), writeable[table.labels[: table.size]])
    np.testing.assert_array_equal(a, first)
    index.remove([0])
    after = table.row_mask(frozen) if index._table is table else index._table.row_mask(frozen)
    assert after is not first and not after[np.flatnonzero(index._table.labels[: index._table.size] == 0)].any()
    _, ids = index.search(q, 5, allowed=frozen)
    assert np.all(ids[ids >= 0] % 3 == 0) and 0 not in ids
