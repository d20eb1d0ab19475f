"""Multi-vector records with MaxSim (engine.multivector): kernels, top-k, deletes, filters, storage."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import shoal
from shoal.engine.errors import (DimensionMismatchError, IdNotFoundError, InvalidArgumentError,
                                 InvalidVectorError, UnimplementedError)
from shoal.engine.multivector import MultiVectorCollection
from shoal.index.kernels import maxsim_numba, maxsim_numpy

DIM = 16


def records(rng, n, most=9, start=0):
    """n records with 1..most vectors each (clustered per record, like a document's tokens)."""
    out = {}
    for i in range(start, start + n):
        center = rng.normal(size=DIM)
        out[i] = (center + 0.7 * rng.normal(size=(int(rng.integers(1, most + 1)), DIM))).astype(np.float32)
    return out


def prepared(x, metric):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x


def maxsim_reference(query, doc, metric):
    """sum_i max_j sim(q_i, d_j) written out the obvious way."""
    q, d = prepared(query, metric), prepared(doc, metric)
    if metric == "l2":
        sims = -((q[:, None, :] - d[None, :, :]) ** 2).sum(-1)
    else:
        sims = q @ d.T
    return float(sims.max(axis=1).sum())


def exhaustive(store, query, k, metric, keep=lambda i: True):
    scored = sorted(((-maxsim_reference(query, v, metric), i) for i, v in store.items() if keep(i)))
    return [i for _, i in scored[:k]], [-s for s, _ in scored[:k]]


def fill(col, store, chunk=50):
    ids = list(store)
    for lo in range(0, len(ids), chunk):
        part = ids[lo:lo + chunk]
        col.upsert(part, [store[i] for i in part], [{"n": i, "even": i % 2 == 0} for i in part])


# --------------------------------------------------------------------- kernels
@pytest.mark.parametrize("l2", [False, True])
def test_maxsim_kernel_equals_numpy_reference(rng, l2):
    q = rng.normal(size=(11, DIM)).astype(np.float32)
    q_off = np.array([0, 3, 4, 11], np.int64)
    vectors = rng.normal(size=(200, DIM)).astype(np.float32)
    starts = rng.integers(0, 190, 300).astype(np.int64)
    ends = starts + rng.integers(1, 10, 300)
    pair_set = rng.integers(0, 3, 300).astype(np.int64)
    got = maxsim_numba.maxsim(q, q_off, pair_set, vectors, starts, ends, l2)
    want = maxsim_numpy.maxsim(q, q_off, pair_set, vectors, starts, ends, l2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    metric = "l2" if l2 else "ip"
    for c in (0, 17, 299):
        s = pair_set[c]
        assert got[c] == pytest.approx(maxsim_reference(q[q_off[s]:q_off[s + 1]], vectors[starts[c]:ends[c]], metric),
                                       rel=1e-5, abs=1e-4)


# ---------------------------------------------------------------------- top-k
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_topk_equals_exhaustive_maxsim(rng, metric):
    store = records(rng, 120)
    col = shoal.Database().create_collection("mv", DIM, metric, multivector="maxsim")
    assert isinstance(col, MultiVectorCollection)
    fill(col, store)
    total = sum(v.shape[0] for v in store.values())
    for _ in range(4):
        query = rng.normal(size=(int(rng.integers(1, 6)), DIM))
        want_ids, want_scores = exhaustive(store, query, 10, metric)
        for res in (col.search(query, k=10, exact=True), col.search(query, k=10, candidates=total)):
            assert res.ids == want_ids
            np.testing.assert_allclose(res.scores, want_scores, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(res.distances, -res.scores)


def test_batch_of_query_sets_and_hnsw_candidates(rng):
    store = records(rng, 400)
    col = shoal.Database().create_collection("mv", DIM, "cosine", index="hnsw", multivector="maxsim")
    fill(col, store, chunk=100)
    col.optimize()
    assert col.describe()["indexed_rows"] > 0
    queries = [store[i][: 1 + i % 3] + 0.3 * rng.normal(size=(1 + i % 3, DIM)) for i in range(0, 400, 40)]
    results = col.search(queries, k=10)
    assert isinstance(results, list) and len(results) == len(queries)
    hits = 0
    for q, res in zip(queries, results):
        want, _ = exhaustive(store, q, 10, "cosine")
        hits += len(set(res.ids) & set(want))
        assert col.search(q, k=10).ids == res.ids  # one set alone == the same set in a batch
    assert hits / (10 * len(queries)) >= 0.9
    res = col.search(queries[0], k=3, explain=True, include=("metadata", "vector"))
    assert res.plan and all(v.shape == store[i].shape for i, v in zip(res.ids, res.vectors))


# -------------------------------------------------------- records, deletes, filters
def test_get_replace_delete_and_count_work_per_record(rng):
    store = records(rng, 60)
    col = shoal.Database().create_collection("mv", DIM, "l2", multivector="maxsim")
    fill(col, store)
    assert len(col) == 60 and col.count() == 60 and col.describe()["vectors"] == sum(len(v) for v in store.values())
    got = col.get([5, 7])
    np.testing.assert_allclose(got.vectors[0], store[5])
    np.testing.assert_allclose(got.vectors[1], store[7])
    assert got.metadata == [{"n": 5, "even": False}, {"n": 7, "even": False}]
    # replacing a record with fewer vectors drops the old ones entirely
    new = rng.normal(size=(1, DIM)).astype(np.float32)
    col.upsert(5, new, {"n": 5, "even": False, "v": 2})
    store[5] = new
    assert len(col) == 60 and col.describe()["vectors"] == sum(len(v) for v in store.values())
    np.testing.assert_allclose(col.get(5).vectors[0], new)
    res = col.search(new, k=1, exact=True)
    assert res.ids == [5] and res.scores[0] == pytest.approx(0.0, abs=1e-4)
    assert col.delete([5, 6, 999]) == 2
    del store[5], store[6]
    assert len(col) == 58 and 5 not in col.search(new, k=60, exact=True).ids
    assert col.count({"even": True}) == sum(1 for i in store if i % 2 == 0)
    assert col.delete(filter={"n": {"$lt": 20}}) == 18
    for i in range(20):
        store.pop(i, None)
    assert len(col) == len(store) == col.count()
    page = col.scroll(filter={"even": True}, limit=100)  # a selective filter: one entry per record
    assert page.records.ids == sorted(i for i in store if i % 2 == 0)
    assert col.scroll(filter={"n": 33}).records.ids == [33]  # the gathered path (few matches)
    assert col.get(filter={"n": {"$in": [33, 35]}}, include=()).ids == [33, 35]
    q = rng.normal(size=(3, DIM))
    assert col.search(q, k=10, exact=True).ids == exhaustive(store, q, 10, "l2")[0]


def test_filters_apply_per_record(rng):
    store = records(rng, 150)
    col = shoal.Database().create_collection("mv", DIM, "cosine", multivector="maxsim")
    fill(col, store)
    q = rng.normal(size=(4, DIM))
    res = col.search(q, k=10, filter={"even": True}, candidates=2000)
    assert res.ids == exhaustive(store, q, 10, "cosine", keep=lambda i: i % 2 == 0)[0]
    assert all(m["even"] for m in res.metadata)
    assert col.set_metadata([3, 4], values={"tag": "x"}) == 2
    assert sorted(col.search(q, k=10, filter={"tag": "x"}, exact=True).ids) == [3, 4]
    assert col.update([3], metadata={"n": 3, "even": True}) == 1
    assert col.get(3).metadata == [{"n": 3, "even": True}]
    np.testing.assert_allclose(col.get(3).vectors[0], prepared(store[3], "cosine"), rtol=1e-5, atol=1e-6)  # kept
    assert 3 in col.search(q, k=200, filter={"even": True}, exact=True).ids


def test_string_ids_and_score_threshold(rng):
    col = shoal.Database().create_collection("mv", DIM, "ip", multivector="maxsim")
    a, b = rng.normal(size=(3, DIM)), rng.normal(size=(2, DIM))
    col.upsert(["a", "b"], [a, b])
    col.upsert(["c"], [a[:1]])
    res = col.search(a, k=5, exact=True)
    assert res.ids[0] == "a" and set(res.ids) == {"a", "b", "c"}
    cut = float(res.scores[1])
    assert col.search(a, k=5, exact=True, score_threshold=cut).ids == res.ids[:2]
    assert col.get(["b"]).vectors[0].shape == (2, DIM)


# --------------------------------------------------------------- persistence
def test_records_survive_restart_merges_and_compaction(tmp_path, rng):
    store = records(rng, 200)
    path = tmp_path / "db"
    db = shoal.Database(path, flush_rows=97, sync="never")
    col = db.create_collection("mv", DIM, "cosine", index="hnsw", multivector="maxsim",
                               optimizer={"background": False})
    fill(col, store, chunk=23)  # records never split across segments, several sealed ones
    queries = [rng.normal(size=(3, DIM)) for _ in range(5)]
    want = [exhaustive(store, q, 10, "cosine")[0] for q in queries]
    assert col.describe()["segments"] > 3
    assert [col.search(q, k=10, exact=True).ids for q in queries] == want
    db.close()
    db = shoal.Database(path, flush_rows=97, sync="never")
    col = db.get_collection("mv")
    assert isinstance(col, MultiVectorCollection) and len(col) == 200
    assert [col.search(q, k=10, exact=True).ids for q in queries] == want
    col.optimize()
    assert col.describe()["segments"] <= 2
    assert [col.search(q, k=10, exact=True).ids for q in queries] == want
    np.testing.assert_allclose(col.get(17).vectors[0], prepared(store[17], "cosine"), rtol=1e-5, atol=1e-6)
    col.delete(list(range(0, 200, 4)))
    for i in range(0, 200, 4):
        del store[i]
    col.compact()
    want = [exhaustive(store, q, 10, "cosine")[0] for q in queries]
    assert [col.search(q, k=10, exact=True).ids for q in queries] == want
    snap = tmp_path / "snap"
    col.snapshot(snap)
    db.close()
    with shoal.Database(path) as db:
        col = db.get_collection("mv")
        assert len(col) == 150 and [col.search(q, k=10, exact=True).ids for q in queries] == want
        assert db.get_or_create_collection("mv", DIM, multivector="maxsim") is col


def test_acknowledged_records_survive_kill_9(tmp_path):
    path = tmp_path / "db"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, shoal
        db = shoal.Database({str(path)!r}, flush_rows=1000)
        col = db.create_collection("mv", 3, "l2", multivector="maxsim")
        col.upsert([1, 2], [np.ones((3, 3)), np.zeros((2, 3))], [{{"k": "a"}}, {{"k": "b"}}])
        col.upsert(1, np.full((1, 3), 5.0))
        col.delete([2])
        print("acked", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == -signal.SIGKILL and "acked" in out.stdout, out.stderr
    with shoal.Database(path) as db:
        col = db.get_collection("mv")
        assert len(col) == 1
        got = col.get(1)
        np.testing.assert_allclose(got.vectors[0], np.full((1, 3), 5.0))
        assert got.metadata == [{}]


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, error", [
    (lambda c: c.upsert([1, 2], [np.ones((2, DIM))]), InvalidArgumentError),
    (lambda c: c.upsert([1], [np.ones((2, DIM + 1))]), DimensionMismatchError),
    (lambda c: c.upsert([1], [np.zeros((0, DIM))]), InvalidArgumentError),
    (lambda c: c.upsert([1], [np.full((2, DIM), np.nan)]), InvalidVectorError),
    (lambda c: c.upsert([1, 1], [np.ones((1, DIM)), np.ones((1, DIM))]), InvalidArgumentError),
    (lambda c: c.upsert([1], np.ones((1, DIM))), InvalidArgumentError),
    (lambda c: c.search(np.ones((2, DIM)), group_by="n"), InvalidArgumentError),
    (lambda c: c.search(np.ones((2, DIM)), candidates=0), InvalidArgumentError),
    (lambda c: c.search([np.ones((2, DIM)), np.ones((1, DIM - 1))]), DimensionMismatchError),
    (lambda c: c.update([1], vectors=[np.ones((1, DIM))]), UnimplementedError),
    (lambda c: c.update([12345], metadata={"a": 1}), IdNotFoundError),
    (lambda c: c.recommend([1]), UnimplementedError),
])
def test_bad_calls_raise_clear_errors_and_change_nothing(rng, call, error):
    col = shoal.Database().create_collection("mv", DIM, multivector="maxsim")
    col.upsert([1], [np.ones((2, DIM))], {"n": 1})
    with pytest.raises(error):
        call(col)
    assert len(col) == 1 and col.describe()["vectors"] == 2 and col.get(1).metadata == [{"n": 1}]


def test_bad_collection_options():
    db = shoal.Database()
    with pytest.raises(InvalidArgumentError, match="multivector"):
        db.create_collection("a", DIM, multivector="sum")
    with pytest.raises(InvalidArgumentError, match="text_fields"):
        db.create_collection("b", DIM, multivector="maxsim", text_fields=["t"])
    assert db.create_collection("c", DIM, multivector=None).__class__.__name__ == "Collection"


def test_readme_example_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Multi-vector records"):]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 5)], flags=re.S)
    exec(compile(code, "README[multivector]", "exec"), {"__name__": "readme_example"})
    assert "p1" in capsys.readouterr().out
