"""FlatIndex: exact equality with a numpy argsort reference for every metric and backend."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shoal import DimensionMismatchError, IdNotFoundError, InvalidArgumentError, InvalidVectorError
from shoal.engine.errors import FormatVersionError, CorruptionError
from shoal.index import FlatIndex, load_index, make_index
from tests.conftest import assert_knn_equal, brute_force

METRICS = ["l2", "cosine", "ip"]
BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_flat_equals_reference(metric, backend, rng):
    x = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(37, 16)).astype(np.float32)
    index = FlatIndex(16, metric, backend=backend)
    index.add(x, np.arange(500))
    d, i = index.search(q, 10)
    ref_d, ref_i = brute_force(q, x, 10, metric)
    assert_knn_equal(d, i, ref_d, ref_i)


finite = st.floats(-100, 100, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), metric=st.sampled_from(METRICS), backend=st.sampled_from(BACKENDS))
def test_flat_property(data, metric, backend):
    n = data.draw(st.integers(1, 60))
    dim = data.draw(st.integers(1, 8))
    k = data.draw(st.integers(1, 12))
    x = data.draw(arrays(np.float32, (n, dim), elements=st.integers(-5, 5).map(float)))
    q = data.draw(arrays(np.float32, (3, dim), elements=finite))
    index = FlatIndex(dim, metric, backend=backend)
    index.add(x, np.arange(n))
    d, i = index.search(q, k)
    ref_d, ref_i = brute_force(q, x, min(k, n), metric)
    atol = 1e-3 * max(1.0, float(np.abs(ref_d).max()))
    assert_knn_equal(d, i, ref_d, ref_i, atol=atol)
    if k > n:
        assert np.all(i[:, n:] == -1) and np.all(np.isinf(d[:, n:]))


def test_ties_break_by_lower_id():
    x = np.ones((10, 4), np.float32)
    index = FlatIndex(4, "l2")
    index.add(x, np.arange(10)[::-1].copy())
    _, i = index.search(np.ones((1, 4), np.float32), 5)
    assert i.tolist() == [[0, 1, 2, 3, 4]]


def test_blocking_many_queries_and_rows(rng, monkeypatch):
    import shoal.index.kernels.topk as topk

    monkeypatch.setattr(topk, "QUERY_BLOCK", 7)
    monkeypatch.setattr(topk, "DATA_BLOCK", 50)
    x = rng.normal(size=(333, 8)).astype(np.float32)
    q = rng.normal(size=(40, 8)).astype(np.float32)
    index = FlatIndex(8, "l2")
    index.add(x, np.arange(333))
    d, i = index.search(q, 13)
    assert_knn_equal(d, i, *brute_force(q, x, 13, "l2"))


def test_empty_and_small(rng):
    index = FlatIndex(3, "l2")
    d, i = index.search(np.zeros(3), 4)
    assert d.shape == (1, 4) and np.all(i == -1) and np.all(np.isinf(d))
    index.add(np.ones((1, 3)), [7])
    d, i = index.search(np.zeros((2, 3)), 4)
    assert i[:, 0].tolist() == [7, 7] and np.all(i[:, 1:] == -1)
    np.testing.assert_allclose(d[:, 0], 3.0)


def test_zero_vectors_cosine():
    index = FlatIndex(3, "cosine")
    index.add(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), [0, 1, 2])
    d, i = index.search(np.array([1, 0, 0], np.float32), 3)
    assert i.tolist() == [[1, 0, 2]]
    np.testing.assert_allclose(d, [[0.0, 1.0, 1.0]], atol=1e-6)
    d, i = index.search(np.zeros(3, np.float32), 3)  # zero query: all similarities 0
    np.testing.assert_allclose(d, [[1.0, 1.0, 1.0]])
    assert i.tolist() == [[0, 1, 2]]


def test_upsert_remove_and_filter(rng):
    x = rng.normal(size=(100, 5)).astype(np.float32)
    index = FlatIndex(5, "l2")
    index.add(x, np.arange(100))
    index.add(x[:1] + 100, [3])  # replace id 3
    assert len(index) == 100
    _, i = index.search(x[3], 1)
    assert i[0, 0] != 3
    assert index.remove([0, 1]) == 2
    with pytest.raises(IdNotFoundError):
        index.remove([1, 2])
    assert len(index) == 98 and index.contains(np.array([2])).all()
    mask = np.zeros(100, bool)
    mask[[10, 20, 30]] = True
    d, i = index.search(x[:2], 5, allowed=mask)
    assert set(i[0, :3].tolist()) == {10, 20, 30} and np.all(i[:, 3:] == -1)
    _, i2 = index.search(x[:2], 5, allowed=np.array([10, 20, 30]))
    assert np.array_equal(i, i2)
    for _ in range(3):  # enough removals to trigger internal compaction
        live = np.flatnonzero(index.contains(np.arange(100)))
        index.remove(live[: live.size // 2])
    live = np.flatnonzero(index.contains(np.arange(100)))
    d, i = index.search(x[:5], 3)
    xr = x.copy()
    ref_d, ref_i = brute_force(x[:5], xr[live], 3, "l2", labels=live)
    assert_knn_equal(d, i, ref_d, ref_i)


def test_range_search(rng):
    x = rng.normal(size=(200, 4)).astype(np.float32)
    q = rng.normal(size=(5, 4)).astype(np.float32)
    index = FlatIndex(4, "l2")
    index.add(x, np.arange(200))
    lims, d, i = index.range_search(q, 1.5)
    ref = ((q[:, None] - x[None]) ** 2).sum(-1)
    for r in range(5):
        expected = set(np.flatnonzero(ref[r] < 1.5).tolist())
        got = i[lims[r]:lims[r + 1]]
        assert set(got.tolist()) == expected
        assert np.all(np.diff(d[lims[r]:lims[r + 1]]) >= 0)


def test_bad_input_changes_nothing(rng):
    index = FlatIndex(4, "l2")
    index.add(rng.normal(size=(10, 4)), np.arange(10))
    with pytest.raises(DimensionMismatchError):
        index.add(np.zeros((2, 5)), [20, 21])
    with pytest.raises(InvalidVectorError):
        index.add(np.array([[0, np.nan, 0, 0]]), [20])
    with pytest.raises(InvalidArgumentError):
        index.add(np.zeros((2, 4)), [20])
    with pytest.raises(InvalidArgumentError):
        index.search(np.zeros(4), 0)
    with pytest.raises(InvalidArgumentError, match="unknown search parameter"):
        index.search(np.zeros(4), 1, params={"ef_search": 5})
    assert len(index) == 10


def test_save_load_roundtrip(tmp_path, rng):
    x = rng.normal(size=(300, 8)).astype(np.float32)
    index = make_index("Flat", 8, "cosine")
    index.add(x, np.arange(300) * 2)
    index.remove([4, 6])
    path = tmp_path / "flat.idx"
    index.save(path)
    loaded = load_index(path)
    assert isinstance(loaded, FlatIndex) and len(loaded) == 298
    q = rng.normal(size=(9, 8)).astype(np.float32)
    for a, b in zip(index.search(q, 7), loaded.search(q, 7)):
        np.testing.assert_array_equal(a, b)
    loaded.add(x[:1], [1000])  # a memory-mapped index still accepts writes
    assert len(loaded) == 299


def test_load_rejects_wrong_kind_version_and_corruption(tmp_path, rng):
    from shoal.storage.arrayfile import write_arrays

    path = tmp_path / "other.idx"
    write_arrays(path, "NOTFLAT", 1, {"a": np.zeros(3)})
    with pytest.raises(FormatVersionError, match="NOTFLAT"):
        FlatIndex.load(path)
    write_arrays(path, "FLAT", 99, {"a": np.zeros(3)})
    with pytest.raises(FormatVersionError, match="version 99"):
        FlatIndex.load(path)
    index = FlatIndex(4, "l2")
    index.add(rng.normal(size=(50, 4)), np.arange(50))
    index.save(path)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="checksum"):
        FlatIndex.load(path)
    path.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(CorruptionError):
        FlatIndex.load(path)


def test_backend_switch(monkeypatch):
    from shoal.engine.backend import get_backend, load_kernels

    monkeypatch.setenv("SHOAL_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    assert load_kernels("shoal.index.kernels", "flat", get_backend()).__name__.endswith("flat_numpy")
    with pytest.raises(InvalidArgumentError, match="unknown backend"):
        get_backend("tpu")


def test_unknown_spec():
    from shoal.engine.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError, match="unknown index spec"):
        make_index("Banana42", 4)
    with pytest.raises(InvalidSpecError):
        make_index("", 4)
