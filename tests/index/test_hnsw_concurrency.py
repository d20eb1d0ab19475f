"""HNSW under concurrency and with in-graph codes: searches beside adds, exact re-rank, codes saved."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from shoal.engine.metrics import reference_distances
from shoal.index import HNSWIndex, load_index


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(30, 32)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 30, 4000)] + rng.normal(size=(4000, 32))).astype(np.float32)
    return x, x[rng.integers(0, 4000, 50)] + 0.1


def test_many_threads_search_while_another_adds(data):
    """Adds are serialised against searches per insert batch: every search returns k valid, live ids."""
    x, q = data
    index = HNSWIndex(32, "l2", M=8, ef_construction=40)
    index.add(x[:2000], np.arange(2000))
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        try:
            while not stop.is_set():
                for row in q:
                    d, i = index.search(row, 5)
                    assert np.all(i >= 0) and np.all(i < 4000) and np.all(np.diff(d[0]) >= 0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=search) for _ in range(6)]
    for w in workers:
        w.start()
    for start in range(2000, 4000, 250):
        index.add(x[start:start + 250], np.arange(start, start + 250))
    stop.set()
    for w in workers:
        w.join()
    assert not errors, errors[0]
    assert len(index) == 4000


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_walk_on_codes_returns_exact_distances(data, metric):
    x, q = data
    index = HNSWIndex(32, metric, M=8, ef_construction=40, codes="sq8")
    index.add(x, np.arange(x.shape[0]))
    d, i = index.search(q, 10, params={"ef_search": 48})
    want = np.stack([reference_distances(q[r:r + 1], x[i[r]], metric)[0] for r in range(q.shape[0])])
    np.testing.assert_allclose(d, want, rtol=1e-4, atol=1e-4)  # re-ranked at full precision


def test_codes_saved_and_widened(tmp_path, data):
    x, q = data
    index = HNSWIndex(32, "l2", M=8, ef_construction=40, codes="sq8")
    index.add(x[:1000], np.arange(1000))
    lo = index._sq_lo.copy()
    index.add(x[1000:] * 3, np.arange(1000, 4000))  # outside the fitted range: the range widens
    assert np.all(index._sq_lo <= lo)
    index.save(tmp_path / "h.idx")
    loaded = load_index(tmp_path / "h.idx")
    np.testing.assert_array_equal(loaded._g0, index._g0[:4000])
    np.testing.assert_array_equal(loaded._sq_scale, index._sq_scale)
    np.testing.assert_array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_default_auto_walks_codes_from_the_crossover_dimension_with_the_recall_floor(metric):
    """The default ``codes="auto"`` walks floats below ``AUTO_SQ8_MIN_DIM`` and SQ8 codes from it, keeping
    the recall floor at the default ef (the exact re-rank) and exact distances in the results."""
    from shoal.index.hnsw import AUTO_SQ8_MIN_DIM

    assert not HNSWIndex(AUTO_SQ8_MIN_DIM - 1, metric).walks_codes
    rng = np.random.default_rng(5)
    dim = AUTO_SQ8_MIN_DIM + 128
    centers = rng.normal(size=(20, dim)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, dim))).astype(np.float32)
    q = x[rng.integers(0, 3000, 40)] + rng.normal(size=(40, dim)).astype(np.float32) * 0.5
    index = HNSWIndex(dim, metric, M=8, ef_construction=60)
    assert index.codes == "auto" and index.walks_codes
    index.add(x, np.arange(3000))
    d, i = index.search(q, 10)
    exact = np.stack([reference_distances(q[r:r + 1], x, metric)[0] for r in range(q.shape[0])])
    truth = np.argsort(exact, axis=1, kind="stable")[:, :10]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i.tolist(), truth.tolist())]) >= 0.95
    np.testing.assert_allclose(d, np.take_along_axis(exact, i, axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("codes, walks", [("none", False), ("sq8", True), ("auto", True)])
def test_a_saved_index_keeps_its_walk(tmp_path, codes, walks):
    """A file records the walk it was built with: ``codes="none"`` at a dimension where the default would
    walk codes loads as a float walk, and the codes option reads back as saved."""
    from shoal.index.hnsw import AUTO_SQ8_MIN_DIM

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, AUTO_SQ8_MIN_DIM)).astype(np.float32)
    index = HNSWIndex(AUTO_SQ8_MIN_DIM, "l2", M=8, ef_construction=40, codes=codes)
    index.add(x, np.arange(300))
    index.save(tmp_path / "h.idx")
    loaded = load_index(tmp_path / "h.idx")
    assert (loaded.codes, loaded.walks_codes) == (codes, walks)
    np.testing.assert_array_equal(loaded.search(x[:5], 5)[1], index.search(x[:5], 5)[1])
