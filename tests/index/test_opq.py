"""OPQ: the rotation is orthogonal and lowers PQ's error on data whose variance PQ's blocks split badly;
the wrapper keeps exact distances, filters, params, save/load and Collection persistence of its inner index."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine.errors import InvalidArgumentError, InvalidSpecError, NotTrainedError
from shoal.index import OPQIndex, load_index, make_index
from shoal.quant.opq import train_opq_rotation
from shoal.quant.pq import ProductQuantizer
from tests.quant.helpers import recall, true_ids

N, DIM, NQ, K = 4000, 32, 50, 10


@pytest.fixture(scope="module")
def data():
    """Variance decaying over coordinates, then a random rotation: PQ's fixed blocks split it badly."""
    rng = np.random.default_rng(5)
    mix = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    x = (rng.standard_normal((N + NQ, DIM)) * np.exp(-np.arange(DIM) / 5.0)) @ mix
    return x[:N].astype(np.float32), x[N:].astype(np.float32)


def test_rotation_is_orthogonal_and_lowers_pq_error(data):
    x, _ = data
    r = train_opq_rotation(x, 4, niter=8, seed=1)
    np.testing.assert_allclose(r @ r.T, np.eye(DIM), atol=1e-5)
    np.testing.assert_array_equal(r, train_opq_rotation(x, 4, niter=8, seed=1))  # seeded

    def pq_mse(v: np.ndarray) -> float:
        pq = ProductQuantizer(DIM, 4, seed=0)
        pq.train(v)
        return float(((pq.decode(pq.encode(v)) - v) ** 2).sum(1).mean())

    assert pq_mse(x @ r) < 0.8 * pq_mse(x)
    with pytest.raises(InvalidArgumentError, match="divisor"):
        train_opq_rotation(x, 5)
    with pytest.raises(InvalidArgumentError, match="256"):
        train_opq_rotation(x[:100], 4)


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_opq_raises_pq_recall(metric, data):
    x, q = data
    truth = true_ids(q, x, K, metric)
    raw = {}
    for spec in ("PQ4", "OPQ4,PQ4"):
        index = make_index(spec, DIM, metric, opq_niter=10) if spec.startswith("OPQ") else make_index(spec, DIM, metric)
        index.train(x)
        index.add(x, np.arange(N))
        raw[spec] = recall(index.search(q, K, params={"rescore": False})[1], truth)
        assert recall(index.search(q, K, params={"oversample": 10})[1], truth) >= 0.95
    assert raw["OPQ4,PQ4"] >= raw["PQ4"] + 0.1, raw


def test_distances_are_those_of_the_original_space(data):
    """A rotation in front of an exact index changes nothing: same ids as brute force, same distances."""
    x, q = data
    index = make_index("OPQ4,Flat", DIM, "l2", opq_niter=2)
    index.train(x)
    index.add(x, np.arange(N))
    d, i = index.search(q, K)
    np.testing.assert_array_equal(i, true_ids(q, x, K, "l2"))
    np.testing.assert_allclose(d, ((q[:, None, :] - x[i]) ** 2).sum(-1), rtol=1e-4, atol=1e-3)
    lims, rd, ri = index.range_search(q[:3], float(d[0, 4]) + 1e-4)
    assert set(ri[lims[0]:lims[1]].tolist()) == set(i[0, :5].tolist())


def test_ivf_inner_params_filters_save_load(data, tmp_path):
    x, q = data
    index = make_index("OPQ8,IVF16,PQ8", DIM, "l2", opq_niter=5)
    assert isinstance(index, OPQIndex) and not index.is_trained
    with pytest.raises(NotTrainedError):
        index.search(q, K)
    index.train(x)
    index.add(x, np.arange(N))
    assert index.code_size == 8 and index.nbytes > N * 8 + DIM * DIM * 4
    with pytest.raises(InvalidArgumentError, match="unknown search parameter"):
        index.search(q, K, params={"ef_search": 8})
    truth = true_ids(q, x, K, "l2")
    assert recall(index.search(q, K, params={"nprobe": 16})[1], truth) >= 0.9
    mask = np.random.default_rng(2).random(N) < 0.02
    _, i = index.search(q, K, params={"nprobe": 4}, allowed=mask)
    assert mask[i[i >= 0]].all() and ((i >= 0).sum(1) == K).all()

    index.save(tmp_path / "opq.shoal")
    loaded = load_index(tmp_path / "opq.shoal")
    assert isinstance(loaded, OPQIndex) and loaded.m == 8
    for p in ({"nprobe": 4}, {"nprobe": 4, "rescore": False}):
        np.testing.assert_array_equal(loaded.search(q, K, params=p)[1], index.search(q, K, params=p)[1])
    loaded.remove(np.arange(0, N, 2))
    assert loaded.ntotal == N // 2 and not np.isin(loaded.search(q, K)[1], np.arange(0, N, 2)).any()


def test_bad_specs():
    with pytest.raises(InvalidSpecError, match="divisor"):
        make_index("OPQ5,PQ4", DIM, "l2")
    with pytest.raises(InvalidSpecError, match="unknown index spec"):
        make_index("OPQ4,Nope", DIM, "l2")


def test_durable_collection_reopens_with_the_same_results(data, tmp_path):
    x, q = data
    x = np.concatenate([x, x[::-1] * 1.01])  # enough rows for the segment to train IVF-PQ
    with shoal.Database(tmp_path / "db") as db:
        col = db.create_collection("v", dim=DIM, metric="l2", index="OPQ4,IVF8,PQ4", opq_niter=4)
        col.upsert(list(range(len(x))), x)
        col.optimize()
        before = [r.ids for r in col.search(q, k=K, params={"nprobe": 8})]
    with shoal.Database(tmp_path / "db") as db:
        col = db.get_collection("v")
        (seg,) = [s for s in col._shard.segments if s.n]
        assert isinstance(seg.index, OPQIndex) and seg.index.is_trained and seg.index.ntotal == len(x)  # from index.bin
        after = col.search(q, k=K, params={"nprobe": 8}, explain=True)
        assert after[0].plan[0]["path"] == "index"  # the PQ code scan is cheaper than the exact one
        _, i = seg.index.search(q, K, params={"nprobe": 8})
    assert [r.ids for r in after] == before == i.tolist()
    truth = true_ids(q, x, K, "l2")
    assert recall(i, truth) >= 0.9
