"""RagPipeline's retrieval option: BM25 on the chunk text fused with the dense search."""
import pydoc_data.topics as topics
import pytest

import shoal
from shoal import InvalidArgumentError
from shoal.rag import BloomEmbedder, Document, RagPipeline

TOPICS = ("for", "while", "try", "integers", "strings", "lambda", "with", "import")


def pipeline(text_fields, retrieval="auto"):
    emb = BloomEmbedder()
    col = shoal.Database().create_collection("rag", dim=emb.dim, metric="cosine", text_fields=text_fields)
    pipe = RagPipeline(col, emb, chunk_words=60, overlap_words=10, retrieval=retrieval)
    pipe.ingest([Document(topics.topics[t], t) for t in TOPICS])
    return pipe


def test_auto_uses_hybrid_when_the_chunk_text_is_indexed():
    hybrid, dense = pipeline(["text"]), pipeline(None)
    assert hybrid.hybrid and not dense.hybrid and not pipeline(["text"], "dense").hybrid
    q = "What does the __enter__ method of a context manager return?"
    got = hybrid.retrieve(q, k=4, min_score=0.0)
    res = hybrid.collection.search(hybrid.embedder.encode([q])[0], k=4, text=q)
    assert [(c.source, c.chunk) for c in got] == [(m["source"], m["chunk"]) for m in res.metadata]
    assert got[0].source == "with"  # the identifier BM25 finds
    assert [c.score for c in got] == pytest.approx(res.scores.tolist(), rel=1e-6)
    assert [c.source for c in dense.retrieve(q, k=4, min_score=0.0)] == [
        m["source"] for m in dense.collection.search(dense.embedder.encode([q])[0], k=4).metadata]


def test_hybrid_keeps_the_unknown_gate_and_rejects_bad_options():
    pipe = pipeline(["text"])
    assert pipe.retrieve("for statement", k=3, min_score=1.01) == []  # no hit passes the cosine threshold
    with pytest.raises(InvalidArgumentError):
        pipeline(None, "hybrid")
    with pytest.raises(InvalidArgumentError):
        pipeline(["text"], "bm25")
