"""Text (BM25) and sparse fields of a collection, and hybrid search with fusion."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

import shoal
from shoal.engine.errors import InvalidArgumentError
from shoal.engine.fusion import FusionParams, fuse
from shoal.index.tokenizer import Tokenizer


def corpus(n: int = 400) -> list[str]:
    """Real text: paragraphs of Python's language reference (pydoc_data, standard library)."""
    from pydoc_data.topics import topics

    paras = [p.strip() for t in sorted(topics) for p in topics[t].split("\n\n") if len(p.split()) >= 5]
    return paras[:n]


QUERIES = ["for loop iteration", "exception handling try except", "class attribute lookup", "yield generator",
           "import module package", "lambda expression", "the", "unicode string literal bytes"]


def make(db, texts, chunk=1000, **kw):
    col = db.create_collection("docs", 3, text_fields=["text"], **kw)
    vecs = np.random.default_rng(0).normal(size=(len(texts), 3))
    for s in range(0, len(texts), chunk):
        col.upsert(list(range(s, min(s + chunk, len(texts)))), vecs[s:s + chunk],
                   [{"text": t, "n": i} for i, t in enumerate(texts[s:s + chunk], s)])
    return col


def reference_bm25(texts, query, k1=1.2, b=0.75):
    """Okapi BM25, Lucene's idf and tf form, written out plainly."""
    tok = Tokenizer()
    docs = [Counter(tok(t)) for t in texts]
    lengths = [sum(d.values()) for d in docs]
    n, avgdl = len(docs), sum(lengths) / len(docs)
    scores = []
    for d, dl in zip(docs, lengths):
        s = 0.0
        for term in tok(query):
            if term in d:
                df = sum(1 for x in docs if term in x)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * d[term] / (d[term] + k1 * (1 - b + b * dl / avgdl))
        scores.append(s)
    return np.array(scores)


def test_bm25_equals_reference_and_bm25s():
    bm25s = pytest.importorskip("bm25s")
    texts = corpus()
    col = make(shoal.Database(), texts, text_options={"k1": 1.5, "b": 0.75})
    tok = Tokenizer()
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index([tok(t) for t in texts], show_progress=False)
    for q in QUERIES:
        plain = reference_bm25(texts, q, k1=1.5)
        theirs = ref.get_scores(tok(q))
        np.testing.assert_allclose(plain, theirs, rtol=1e-5, atol=1e-6)
        res = col.search(text=q, k=20, include=())
        np.testing.assert_allclose(res.scores, plain[res.ids], rtol=1e-5)
        top = np.lexsort((np.arange(len(texts)), -plain))[:20]
        top = top[plain[top] > 0]
        np.testing.assert_allclose(res.scores, plain[top], rtol=1e-5)  # same ranking (scores, ties aside)


def scores_by_id(col, q, k=30, **kw):
    res = col.search(text=q, k=k, include=(), **kw)
    return dict(zip(res.ids, res.scores.tolist()))


def test_scores_do_not_depend_on_segments_merges_or_deleted_rows(tmp_path):
    texts = corpus(300)
    one = make(shoal.Database(), texts)
    db = shoal.Database(tmp_path / "db", flush_rows=37, sync="never")
    many = make(db, texts, chunk=37, optimizer={"background": False})
    assert many.describe()["segments"] > 5
    before = {q: scores_by_id(many, q) for q in QUERIES}
    for q in QUERIES:
        assert before[q] == pytest.approx(scores_by_id(one, q), rel=1e-6)
    many.optimize()
    assert many.describe()["segments"] <= 2
    for q in QUERIES:
        assert scores_by_id(many, q) == pytest.approx(before[q], rel=1e-6)
    # deletes: statistics are over live records, as if the deleted ones were never written
    gone = list(range(0, 300, 3))
    many.delete(gone)
    kept = [t for i, t in enumerate(texts) if i % 3]
    fresh = make(shoal.Database(), kept)
    for q in QUERIES:
        got = scores_by_id(many, q)
        assert not set(got) & set(gone)
        want = {[i for i in range(300) if i % 3][j]: s for j, s in scores_by_id(fresh, q).items()}
        assert got == pytest.approx(want, rel=1e-6)
    many.compact()
    for q in QUERIES:
        assert scores_by_id(many, q) == pytest.approx({[i for i in range(300) if i % 3][j]: s
                                                     for j, s in scores_by_id(fresh, q).items()}, rel=1e-6)


def test_concurrent_text_searches_equal_serial_ones_across_writes():
    """Threads share each segment's impact cache (filled under a lock, never mutated in place) and keep
    their own kernel scratch: concurrent one-query and batch searches equal serial ones, before and
    after a write that moves avgdl (the cache then recomputes)."""
    from concurrent.futures import ThreadPoolExecutor

    texts = corpus(400)
    col = make(shoal.Database(), texts, chunk=150)
    calls = list(QUERIES) + [QUERIES[:3], QUERIES[5:]]  # batches under SERIAL_BATCH: any threading layer

    def run(q):
        res = col.search(text=q, k=30, include=())
        return [dict(zip(r.ids, r.scores.tolist())) for r in (res if isinstance(res, list) else [res])]

    for _ in range(2):
        want = [run(q) for q in calls]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(run, calls * 3))
        assert got == want * 3
        col.upsert([10_000], np.zeros((1, 3)), [{"text": " ".join(texts[:3]), "n": -1}])


def test_filter_applies_to_text_search():
    col = make(shoal.Database(), corpus(200))
    res = col.search(text="the", k=50, filter={"n": {"$lt": 40}})
    assert len(res) and all(m["n"] < 40 for m in res.metadata)


def test_text_index_survives_restart_and_replays_the_log(tmp_path):
    texts = corpus(200)
    path = tmp_path / "db"
    db = shoal.Database(path, flush_rows=50)
    make(db, texts, chunk=60)  # sealed segments and rows left in the log
    want = {q: scores_by_id(db.get_collection("docs"), q) for q in QUERIES}
    db.close()
    with shoal.Database(path) as db:
        col = db.get_collection("docs")
        assert list((path / "collections/docs").glob("seg-*/postings.bin"))
        for q in QUERIES:
            assert scores_by_id(col, q) == pytest.approx(want[q], rel=1e-6)


def test_acknowledged_text_survives_kill_9(tmp_path):
    path = tmp_path / "db"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, shoal
        db = shoal.Database({str(path)!r}, flush_rows=1000)
        col = db.create_collection("docs", 3, text_fields=["text"])
        col.upsert([1, 2], np.ones((2, 3)), [{{"text": "zebra crossing"}}, {{"text": "plain words"}}])
        print("acked", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == -signal.SIGKILL and "acked" in out.stdout, out.stderr
    with shoal.Database(path) as db:
        res = db.get_collection("docs").search(text="zebra", k=5)
        assert res.ids == [1]


def test_sparse_vectors_score_by_dot_product(rng):
    from shoal.engine.collection import Collection

    col = Collection("sp", 2, sparse_fields=["splade"], _flush_rows=64)  # several segments
    dense = np.zeros((300, 200), np.float32)
    payloads = []
    for i in range(300):
        idx = rng.choice(200, int(rng.integers(1, 12)), replace=False)
        val = rng.uniform(0.0, 3.0, idx.size).astype(np.float32)
        dense[i, idx] = val
        payloads.append({"splade": {"indices": idx.tolist(), "values": val.tolist()}})
    for s in range(0, 300, 50):
        col.upsert(list(range(s, s + 50)), rng.normal(size=(50, 2)), payloads[s:s + 50])
    col.delete([5, 6, 7])
    dense[[5, 6, 7]] = 0
    for _ in range(10):
        qi = rng.choice(200, 5, replace=False)
        qv = rng.uniform(0.1, 2.0, 5)
        res = col.search(sparse={"indices": qi.tolist(), "values": qv.tolist()}, k=15, include=())
        ref = dense[:, qi] @ qv
        order = np.lexsort((np.arange(300), -ref))[:15]
        order = order[ref[order] > 0]
        np.testing.assert_allclose(res.scores, ref[order], rtol=1e-5)
        assert not {5, 6, 7} & set(res.ids)


def test_fusion_math_on_hand_made_lists():
    a = (np.array([1, 2, 3]), np.array([0.9, 0.5, 0.1]))
    b = (np.array([3, 4]), np.array([10.0, 2.0]))
    ids, scores, found = fuse(FusionParams.from_options("rrf", None), {"a": a, "b": b}, 10)
    want = {1: 1 / 61, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert ids.tolist() == [3, 1, 2, 4]  # 2 and 4 tie: lower id first
    np.testing.assert_allclose(scores, [want[i] for i in ids.tolist()])
    assert found[0] == {"a": 0.1, "b": 10.0}
    ids, scores, _ = fuse(FusionParams.from_options("rrf", {"k": 1, "weights": {"b": 2}}), {"a": a, "b": b}, 2)
    assert ids.tolist() == [3, 4] and scores.tolist() == pytest.approx([1 / 4 + 2 / 2, 2 / 3])
    ids, scores, _ = fuse(FusionParams.from_options("weighted", {"weights": {"a": 0.5}}), {"a": a, "b": b}, 10)
    want = {1: 0.5, 2: 0.5 * 0.5, 3: 0.0 + 1.0, 4: 0.0}
    assert ids.tolist() == [3, 1, 2, 4] and scores.tolist() == pytest.approx([want[i] for i in ids.tolist()])
    ids, scores, _ = fuse(FusionParams.from_options("dbsf", None), {"a": a, "b": b}, 10)
    mu, sd = np.mean([0.9, 0.5, 0.1]), np.std([0.9, 0.5, 0.1])
    na = {i: (s - (mu - 3 * sd)) / (6 * sd) for i, s in zip([1, 2, 3], [0.9, 0.5, 0.1])}
    mu, sd = 6.0, 4.0
    nb = {3: (10 - (mu - 3 * sd)) / (6 * sd), 4: (2 - (mu - 3 * sd)) / (6 * sd)}
    want = {i: na.get(i, 0) + nb.get(i, 0) for i in [1, 2, 3, 4]}
    assert dict(zip(ids.tolist(), scores.tolist())) == pytest.approx(want)


def test_hybrid_search_fuses_dense_and_text_and_reports_retrievers():
    texts = corpus(200)
    col = make(shoal.Database(), texts)
    q = np.random.default_rng(0).normal(size=(200, 3))[17]  # record 17's own vector: dense rank 1
    res = col.search(q, k=5, text="exception handling", fusion="rrf")
    dense = col.search(q, k=50, include=())
    text = col.search(text="exception handling", k=50, include=())
    for ext, hit in zip(res.ids, res.retrievers):
        assert set(hit) <= {"dense", "bm25:text"}
        if "dense" in hit:
            assert hit["dense"] == pytest.approx(dense.scores[dense.ids.index(ext)], rel=1e-5)
        if "bm25:text" in hit:
            assert hit["bm25:text"] == pytest.approx(text.scores[text.ids.index(ext)], rel=1e-5)
    want = {}
    for r in (dense, text):
        for rank, ext in enumerate(r.ids):
            want[ext] = want.get(ext, 0) + 1 / (61 + rank)
    best = sorted(want, key=lambda e: (-want[e], e))[:5]
    assert res.ids == best
    batch = col.search(np.stack([q, q]), k=5, text=["exception handling"] * 2)
    assert [b.ids for b in batch] == [res.ids, res.ids]


@pytest.mark.parametrize("kwargs", [
    {"text": 3}, {"text": []}, {"text": {"title": "x"}}, {"sparse": {"indices": [1], "values": [1.0]}},
    {"text": "x", "fusion": "borda"}, {"text": "x", "fusion_params": {"depth": 3}},
    {"text": ["a", "b"], "queries": np.zeros(3)}, {"text": "x", "explain": True},
])
def test_bad_hybrid_arguments_raise_clear_errors(kwargs):
    col = make(shoal.Database(), corpus(20))
    with pytest.raises(InvalidArgumentError):
        col.search(k=3, **kwargs)


def test_bad_text_or_sparse_payloads_are_rejected_and_change_nothing():
    db = shoal.Database()
    col = db.create_collection("c", 2, text_fields=["text"], sparse_fields=["sp"])
    for meta in ({"text": 5}, {"sp": {"indices": [1, 1], "values": [1, 2]}}, {"sp": {"indices": [1]}},
                 {"sp": {"indices": [-1], "values": [1.0]}}, {"sp": {"indices": [1], "values": [float("nan")]}}):
        with pytest.raises(InvalidArgumentError):
            col.upsert([1], np.ones((1, 2)), [meta])
    assert len(col) == 0
    with pytest.raises(InvalidArgumentError):
        db.create_collection("d", 2, text_fields="text")
    with pytest.raises(InvalidArgumentError):
        db.create_collection("d", 2, text_fields=["t"], text_options={"k1": -1})


def test_snapshot_copies_postings_and_a_segment_without_them_is_rebuilt(tmp_path):
    from shoal.engine.lexical import attach_postings

    texts = corpus(120)
    db = shoal.Database(tmp_path / "db", flush_rows=50)
    col = make(db, texts, chunk=60)
    want = {q: scores_by_id(col, q) for q in QUERIES}
    db.snapshot(tmp_path / "snap")
    with shoal.Database(tmp_path / "snap") as snap:
        for q in QUERIES:
            assert scores_by_id(snap.get_collection("docs"), q) == pytest.approx(want[q], rel=1e-6)
    seg = col._shard.segments[0]
    loaded = seg.postings.frozen()
    attach_postings(seg, col.lexical, None)  # what a segment written without postings.bin gets
    for name, arr in seg.postings.frozen()["text"].to_arrays().items():
        np.testing.assert_array_equal(arr, loaded["text"].to_arrays()[name], err_msg=name)
    db.close()
