"""End to end with the real models: MiniLM embeddings and SmolLM2-135M, few tokens."""
import pydoc_data.topics as topics
import pytest

import shoal
from shoal.rag import Document, RagPipeline, load_embedder

generation = pytest.importorskip("shoal.rag.generation")


@pytest.fixture(scope="module")
def models():
    try:
        emb = load_embedder("minilm")
        gen = generation.load_generator()
    except shoal.NotFoundError as exc:
        pytest.skip(f"model package missing: {exc}")
    yield emb, gen
    gen.close()


def test_real_models_answer_with_citations(models):
    emb, gen = models
    col = shoal.Database().create_collection("pydoc", dim=emb.dim, metric="cosine")
    rag = RagPipeline(col, emb, gen, chunk_words=100, overlap_words=20,
                      sampling=generation.SamplingParams(max_new_tokens=4))
    # The first words of each topic only: MiniLM embeds a few chunks per second on 2 shared cores.
    rag.ingest([Document(" ".join(topics.topics[t].split()[:120]), t) for t in ("for", "while", "import")])
    events = list(rag.ask_stream("What does the else clause of a while loop do?", k=2, min_score=0.2))
    answer = events[-1]
    assert "".join(events[:-1]) != "" and answer.text.strip()
    assert answer.citations and answer.citations[0].source in ("while", "for")  # both explain loop else clauses
    assert all(c.score >= 0.2 for c in answer.citations)
    assert answer.timings["generate_ms"] > 0 and answer.finish_reason == "stop"
