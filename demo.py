"""``shoal demo``: the main job end to end on a real data set, embedded, no server.

Loads GloVe word vectors, builds collections with metadata, runs plain and
filtered searches, and reports recall against exact search with timings.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on GloVe word vectors",
                       description="Embedded end-to-end demo: ingest GloVe 50-d, search, filter, measure recall.")
    p.add_argument("--n", type=int, default=200_000, help="number of word vectors to load (default 200000)")
    p.add_argument("--index", default="hnsw", help="index spec of the approximate collection (default hnsw)")
    p.add_argument("--queries", type=int, default=500, help="held-out query words for recall (default 500)")
    p.set_defaults(func=run)


def _show(title: str, result) -> None:
    words = ", ".join(f"{h.metadata.get('word')} ({h.score:.2f})" for h in result)
    print(f"  {title}: {words}")


def run(args: argparse.Namespace) -> int:
    import shoal
    from shoal.bench.datasets import glove50
    from shoal.bench.metrics import recall_at_k
    from shoal.index.factory import known_specs

    t0 = time.perf_counter()
    data = glove50(n=args.n, n_test=args.queries)
    print(f"Loaded {data.train.shape[0]:,} GloVe vectors of dim {data.train.shape[1]} "
          f"and {data.test.shape[0]} held-out query words in {time.perf_counter() - t0:.1f}s")
    db = shoal.Database()
    ids = np.arange(data.train.shape[0])
    exact = db.create_collection("glove_exact", dim=50, metric="cosine", index="flat")
    spec = args.index if any(s.lower().startswith(args.index.lower()[:3]) for s in known_specs()) else "flat"
    approx = db.create_collection("glove", dim=50, metric="cosine", index=spec)
    for col in (exact, approx):
        t0 = time.perf_counter()
        col.upsert(ids, data.train, data.train_meta)
        print(f"Built {col!r} in {time.perf_counter() - t0:.1f}s")

    word_row = {m["word"]: i for i, m in enumerate(data.train_meta)}
    print("\nNearest words (cosine), exact collection:")
    for word in ("king", "paris", "python", "ocean"):
        if word in word_row:
            _show(word, exact.search(data.train[word_row[word]], k=6))
    print("\nFiltered: only words of at most 5 letters among the 20,000 most frequent:")
    flt = {"$and": [{"length": {"$lte": 5}}, {"rank": {"$lt": 20_000}}]}
    print(f"  ({exact.count(flt):,} of {len(exact):,} rows match)")
    for word in ("king", "ocean"):
        if word in word_row:
            _show(word, exact.search(data.train[word_row[word]], k=6, filter=flt))

    k = 10
    t0 = time.perf_counter()
    truth = exact.search(data.test, k=k, include=())
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = approx.search(data.test, k=k, include=())
    t_approx = time.perf_counter() - t0
    r = recall_at_k([res.ids for res in found], [res.ids for res in truth], k)
    nq = data.test.shape[0]
    print(f"\nRecall@{k} of {approx.index_spec!r} against exact search over {nq} held-out words: {r:.4f}")
    print(f"  exact: {nq / t_exact:,.0f} queries/s   {approx.index_spec}: {nq / t_approx:,.0f} queries/s (batch)")
    truth_f = exact.search(data.test, k=k, filter=flt, include=())
    found_f = approx.search(data.test, k=k, filter=flt, include=())
    rf = recall_at_k([res.ids for res in found_f], [res.ids for res in truth_f], k)
    print(f"  filtered recall@{k}: {rf:.4f}")
    return 0
