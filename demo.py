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
    p.add_argument("--rag-embedder", default="minilm", help="embedder of the RAG section: minilm (default) or bloom")
    p.add_argument("--rag-tokens", type=int, default=48, help="answer budget of SmolLM2 in the RAG section (default 48)")
    p.add_argument("--no-rag", action="store_true", help="skip the retrieval-augmented answering section")
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
    nq = data.test.shape[0]
    t0 = time.perf_counter()
    truth = [res.ids for res in exact.search(data.test, k=k, include=())]
    print(f"\nRecall@{k} against exact search over {nq} held-out words "
          f"(exact: {nq / (time.perf_counter() - t0):,.0f} queries/s, batch):")
    sweep = [{"ef_search": ef} for ef in (32, 64, 128)] if approx.index_spec.lower().startswith("hnsw") else [{}]
    approx.search(data.test[:8], k=k, include=())  # compile the search kernels before timing them
    for params in sweep:
        t0 = time.perf_counter()
        found = approx.search(data.test, k=k, params=params, include=())
        qps = nq / (time.perf_counter() - t0)
        r = recall_at_k([res.ids for res in found], truth, k)
        print(f"  {approx.index_spec} {params or ''}: recall {r:.4f} at {qps:,.0f} queries/s (batch)")
    truth_f = exact.search(data.test, k=k, filter=flt, include=())
    found_f = approx.search(data.test, k=k, filter=flt, params=sweep[-1], include=())
    rf = recall_at_k([res.ids for res in found_f], [res.ids for res in truth_f], k)
    print(f"  filtered ({exact.count(flt):,} rows match): recall {rf:.4f}")
    if not args.no_rag:
        _rag_section(db, args)
    return 0


RAG_TOPICS = ("for", "while", "if", "try", "with", "raise", "break", "continue")
RAG_WORDS = 250  # first words of each topic: MiniLM on 2 shared cores embeds a few chunks per second
RAG_QUESTIONS = ("What does the else clause of a for loop do?", "What does a try statement do when an exception occurs?")


def _rag_section(db, args: argparse.Namespace) -> None:
    """Retrieval-augmented answering on Python's own reference topics (pydoc_data, ships offline)."""
    import pydoc_data.topics

    from shoal.rag import Answer, Document, RagPipeline, load_embedder
    from shoal.rag.generation import SamplingParams, load_generator

    print(f"\nRetrieval-augmented answering over {len(RAG_TOPICS)} Python reference topics (pydoc_data):")
    t0 = time.perf_counter()
    embedder = load_embedder(args.rag_embedder)
    generator = load_generator()
    print(f"  loaded embedder {embedder.name!r} and generator {generator.name!r} in {time.perf_counter() - t0:.1f}s")
    try:
        col = db.create_collection("python_docs", dim=embedder.dim, metric="cosine", index="flat")
        rag = RagPipeline(col, embedder, generator, sampling=SamplingParams(max_new_tokens=args.rag_tokens))
        meta = {"language": "en", "category": "reference"}
        docs = [Document(" ".join(pydoc_data.topics.topics[t].split()[:RAG_WORDS]), f"pydoc:{t}", {**meta, "title": t})
                for t in RAG_TOPICS]
        report = rag.ingest(docs)
        print(f"  ingested {report.documents} topics as {report.chunks} chunks in {report.seconds:.1f}s")
        for question in RAG_QUESTIONS:
            print(f"\n  Q: {question}\n  A: ", end="", flush=True)
            # SmolLM2-135M answers best from few sources, greedily (repetition penalties made it ramble here).
            for event in rag.ask_stream(question, k=2, min_score=0.2):
                if isinstance(event, Answer):
                    print()
                    for c in event.cited:
                        print(f"     [{c.number}] {c.source} chunk {c.chunk} (score {c.score:.2f})")
                    t = event.timings
                    print(f"     retrieval {t['embed_ms'] + t['search_ms']:.0f} ms, first token "
                          f"{t.get('first_token_ms', 0):.0f} ms, answer {t.get('generate_ms', 0) / 1e3:.1f} s")
                else:
                    print(event, end="", flush=True)
            print()
    finally:
        generator.close()
