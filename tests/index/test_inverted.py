"""Inverted index, tokenizer and the pruned top-k kernel (against the exhaustive reference)."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import InvalidArgumentError
from shoal.index.impacts import ImpactCache
from shoal.index.inverted import InvertedIndex, PostingsBuilder, load_postings, merge_indexes, save_postings
from shoal.index.kernels import bm25_numba, bm25_numpy
from shoal.index.tokenizer import Tokenizer, TokenizerConfig

from tests.conftest import assert_knn_equal


def test_tokenizer_lowercases_and_splits_unicode_words():
    tok = Tokenizer()
    assert tok("Größe, CAFÉ-au-lait: 東京 x_1 2024!") == ["grösse", "café", "au", "lait", "東京", "x_1", "2024"]


def test_tokenizer_stems_and_drops_stop_words():
    tok = Tokenizer(TokenizerConfig.from_options({"stemmer": "english", "stopwords": "english"}))
    assert tok("The runners were running to the stations") == ["runner", "run", "station"]


@pytest.mark.parametrize("bad", [{"stemmer": "klingon"}, {"stopwords": "nope"}, {"min_length": 0}])
def test_tokenizer_rejects_unknown_options(bad):
    with pytest.raises(InvalidArgumentError):
        TokenizerConfig.from_options(bad)


def random_postings(rng, n_docs, vocab, sparse=False, positive=False):
    """A builder filled with Zipf-distributed documents (a few very common terms, a long tail)."""
    builder = PostingsBuilder(np.int64 if sparse else "U")
    docs = []
    for _ in range(n_docs):
        length = int(rng.integers(0, 40))
        words = np.minimum(rng.zipf(1.3, length), vocab) - 1
        keys, counts = np.unique(words, return_counts=True)
        values = rng.normal(size=keys.size).astype(np.float32) if sparse else counts.astype(np.float32)
        values = np.abs(values) if positive else values
        keys = keys.tolist() if sparse else [f"w{k}" for k in keys.tolist()]
        builder.add(keys, values, float(counts.sum()))
        docs.append(dict(zip(keys, values.tolist())))
    return builder, docs


def run_topk(kernels, index, queries, allowed, mode, k, parts=1):
    """``(-score, id)`` of ``kernels.topk`` with the impacts its own backend computed (a fresh cache per
    call); ``parts`` > 1 scores the rows in that many calls, each allowing a slice of them, into one set
    of heaps."""
    q_terms, q_weights, q_off = [], [], [0]
    for keys, weights in queries:
        q_terms.append(index.lookup(list(keys)))  # -1: a term the index lacks (the kernel skips it)
        q_weights.append(np.asarray(weights, np.float64))
        q_off.append(q_off[-1] + len(keys))
    terms = np.concatenate(q_terms).astype(np.int64)
    bm25 = (1.2, 0.75, float(max(index.doclen.mean(), 1e-9))) if mode == 0 else None
    cache = ImpactCache(index.offsets, index.rows, index.values, index.doclen)
    out_d, out_i = np.full((len(queries), k), np.inf), np.full((len(queries), k), -1, np.int64)
    for part in np.array_split(np.arange(index.n), parts):
        part_allowed = np.zeros_like(allowed)
        part_allowed[part] = allowed[part]
        kernels.topk(index.offsets, index.rows, *cache.prepare(terms, bm25, kernels), np.asarray(q_off, np.int64),
                     terms, np.concatenate(q_weights), part_allowed, 0, out_d, out_i)
    kernels.finish(out_d, out_i)  # scores, best first
    return -out_d, out_i


@pytest.mark.parametrize("sparse", [False, True, "positive"])
@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize("parts", [1, 3])
def test_pruned_topk_equals_exhaustive(rng, sparse, k, parts):
    """Pruned == exhaustive; with ``parts`` calls into one set of heaps (as a collection's segments),
    each call starts from the k-th score of the ones before."""
    builder, _ = random_postings(rng, 3000, 400, bool(sparse), positive=sparse == "positive")
    index = builder.freeze()
    queries = []
    for _ in range(40):
        m = int(rng.integers(1, 7))
        terms = rng.choice(60, m, replace=False)  # common and rare terms alike
        keys = terms.tolist() if sparse else [f"w{t}" for t in terms.tolist()]
        if m % 3 == 0:  # a key the index lacks
            keys[-1] = 10**6 if sparse else "absent"
        # negative sparse weights: no pruning (exhaustive); positive ones and BM25: pruned
        weights = rng.normal(size=m) if sparse is True else rng.uniform(0.1, 5.0, m)
        queries.append((keys, weights))
    allowed = rng.random(3000) < 0.7
    mode = 1 if sparse else 0
    if k == 10:  # ties everywhere: equal tf and doc length give equal scores, broken by the lower row
        queries.append(([f"w{t}" for t in range(3)] if not sparse else [0, 1, 2], np.ones(3)))
    d, i = run_topk(bm25_numba, index, queries, allowed, mode, k, parts)
    ref_d, ref_i = run_topk(bm25_numpy, index, queries, allowed, mode, k)
    finite = np.isfinite(ref_d)
    assert (np.isfinite(d) == finite).all()
    assert_knn_equal(np.where(finite, d, 1e30), i, np.where(finite, ref_d, 1e30), ref_i, atol=1e-9)
    assert allowed[i[i >= 0]].all()


def test_bm25_contributions_match_the_formula(rng):
    builder, docs = random_postings(rng, 300, 50)
    index = builder.freeze()
    avgdl = float(index.doclen.mean())
    d, i = run_topk(bm25_numba, index, [(["w0", "w3"], [1.5, 0.5])], np.ones(300, bool), 0, 300)
    for score, row in zip(-d[0], i[0]):
        if row < 0:
            continue
        dl = index.doclen[row]
        expect = sum(w * docs[row][t] / (docs[row][t] + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))
                     for t, w in (("w0", 1.5), ("w3", 0.5)) if t in docs[row])
        assert score == pytest.approx(expect, rel=1e-6)


def test_merge_equals_building_from_the_kept_rows(rng, tmp_path):
    a, docs_a = random_postings(rng, 500, 100)
    b, docs_b = random_postings(rng, 300, 100)
    keep_b = np.sort(rng.choice(300, 120, replace=False))
    row_map_b = np.full(300, -1, np.int64)
    row_map_b[keep_b] = np.arange(500, 620)
    merged = merge_indexes([(a.freeze(), np.arange(500)), (b.freeze(), row_map_b)], 620, "U")
    fresh = PostingsBuilder("U")
    for doc in docs_a + [docs_b[r] for r in keep_b.tolist()]:
        fresh.add(list(doc), list(doc.values()), float(sum(doc.values())))
    expect = fresh.freeze()
    for name, arr in expect.to_arrays().items():
        np.testing.assert_array_equal(getattr(merged, name), arr, err_msg=name)
    save_postings(tmp_path / "p.bin", {"text": merged, "other": expect})
    loaded = load_postings(tmp_path / "p.bin")
    assert list(loaded) == ["text", "other"]
    for name, arr in merged.to_arrays().items():
        np.testing.assert_array_equal(loaded["text"].__dict__[name], arr)


def test_lookup_and_empty_index():
    empty = InvertedIndex.empty("U", 3)
    assert empty.lookup(["a"]).tolist() == [-1]
    b = PostingsBuilder("U")
    b.add(["b", "a"], [1, 2], 3.0)
    b.add(None, None)
    idx = b.freeze()
    assert idx.keys.tolist() == ["a", "b"] and idx.present.tolist() == [True, False]
    assert idx.lookup(["b", "c", "a"]).tolist() == [1, -1, 0]
    assert idx.lookup(np.array(["b", "a"])).tolist() == [1, 0]  # numpy strings hash as str


def test_impact_cache_follows_the_bm25_parameters_and_keeps_handed_out_arrays(rng):
    builder, docs = random_postings(rng, 400, 80)
    index = builder.freeze()
    cache = index.impacts()
    assert index.impacts() is cache  # one cache per (immutable) index
    terms = np.arange(index.keys.size)
    for avgdl in (7.5, 11.0, 7.5):  # a write that moves avgdl recomputes the lists a search reads
        impacts, imp_max, imp_min, slot, dense = cache.prepare(terms[:5], (1.2, 0.75, avgdl), bm25_numba)
        for t in range(5):
            p = slice(index.offsets[t], index.offsets[t + 1])
            tf, dl = index.values[p].astype(np.float64), index.doclen[index.rows[p]].astype(np.float64)
            np.testing.assert_array_equal(impacts[p], tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl)))
            assert imp_max[t] == impacts[p].max() and imp_min[t] == impacts[p].min()
            if slot[t] >= 0:  # a common term's dense map: row -> position in its list
                assert index.offsets[t + 1] - index.offsets[t] >= index.n / 8
                found = np.flatnonzero(dense[slot[t]] >= 0)
                np.testing.assert_array_equal(found, index.rows[p])
                np.testing.assert_array_equal(dense[slot[t]][found], np.arange(found.size))
    old_slot, old_dense = slot.copy(), dense
    _, _, _, slot2, dense2 = cache.prepare(terms, (1.2, 0.75, 7.5), bm25_numba)
    np.testing.assert_array_equal(slot, old_slot)  # a kernel still reading the old pair sees it unchanged
    assert dense is old_dense and (slot2 >= 0).sum() >= (slot >= 0).sum()
    sparse = ImpactCache(index.offsets, index.rows, index.values, index.doclen)
    values, vmax, _, _, _ = sparse.prepare(terms, None, bm25_numba)
    np.testing.assert_array_equal(values, index.values.astype(np.float64))
    assert vmax[0] == index.values[index.offsets[0]:index.offsets[1]].max()


def test_scratch_reuse_across_indexes_of_different_sizes(rng):
    """One-query calls reuse a thread's scratch sized for the largest index seen: results stay exact."""
    big, _ = random_postings(rng, 5000, 300)
    small, _ = random_postings(rng, 200, 300)
    for index in (big.freeze(), small.freeze(), big.freeze()):
        for terms in ([f"w{t}" for t in range(6)], ["w0", "w7", "w19"], ["w3"]):
            query = [(terms, np.ones(len(terms)))]
            allowed = rng.random(index.n) < 0.8
            d, i = run_topk(bm25_numba, index, query, allowed, 0, 10)
            ref_d, ref_i = run_topk(bm25_numpy, index, query, allowed, 0, 10)
            finite = np.isfinite(ref_d)
            assert_knn_equal(np.where(finite, d, 1e30), i, np.where(finite, ref_d, 1e30), ref_i, atol=1e-9)


def test_thread_scratch_grows_to_every_row_of_a_larger_index():
    """The bitmap is rounded up to 64 rows: an index a few rows larger must still get a larger accumulator."""
    bm25_numba._LOCAL.scratch = None
    assert bm25_numba._thread_scratch(5001)[0].shape[0] == 5001
    acc, bits, cand, score = bm25_numba._thread_scratch(5005)
    assert min(acc.shape[0], cand.shape[0], score.shape[0], bits.shape[0] * 64) >= 5005


def test_version_1_postings_files_still_load(rng, tmp_path):
    """Version 1 also stored per-block bounds (of the document-at-a-time kernel): they are ignored."""
    from shoal.index.inverted import KIND
    from shoal.storage.arrayfile import write_arrays

    index = random_postings(rng, 300, 50)[0].freeze()
    old = {f"0.{name}": arr for name, arr in index.to_arrays().items()}
    old.update({f"0.blk_{name}": np.zeros(3, np.float32) for name in ("off", "last", "max", "min", "mindl")})
    write_arrays(tmp_path / "p.bin", KIND, 1, old, {"fields": ["text"]})
    loaded = load_postings(tmp_path / "p.bin")["text"]
    for name, arr in index.to_arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), arr)
