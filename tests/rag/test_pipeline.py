import numpy as np
import pydoc_data.topics as topics
import pytest

import shoal
from shoal import InvalidArgumentError
from shoal.rag import Answer, BloomEmbedder, Document, RagPipeline, SemanticCache, mmr
from shoal.rag.generation import TokenEvent
from shoal.rag.pipeline import SYSTEM_PROMPT, UNKNOWN_ANSWER

TOPICS = {"for": "statement", "while": "statement", "try": "statement", "integers": "literal", "strings": "literal"}


class EchoGenerator:
    """Deterministic stand-in for the LLM: cites source 1, invents a source 9, records prompts."""

    def __init__(self):
        self.calls = []

    def stream(self, messages, params=None):
        self.calls.append(messages)
        for piece in ["From the sources, ", "see [1]", " and [9]", "."]:
            yield TokenEvent(0, piece)


@pytest.fixture
def rag():
    emb = BloomEmbedder()
    col = shoal.Database().create_collection("rag", dim=emb.dim, metric="cosine")
    pipe = RagPipeline(col, emb, EchoGenerator(), chunk_words=60, overlap_words=10,
                       cache=SemanticCache(emb.dim, threshold=0.9))
    pipe.ingest([Document(topics.topics[t], t, {"category": c, "title": t}) for t, c in TOPICS.items()])
    return pipe


def test_answer_cites_only_retrieved_chunks(rag):
    q = "How does the for statement iterate over an iterable?"
    answer = rag.ask(q, k=3, use_cache=False)
    retrieved = rag.collection.search(rag.embedder.encode([q])[0], k=3)
    assert [(c.source, c.chunk) for c in answer.citations] == [(m["source"], m["chunk"]) for m in retrieved.metadata]
    assert [c.number for c in answer.citations] == [1, 2, 3]
    np.testing.assert_allclose([c.score for c in answer.citations], retrieved.scores, rtol=1e-5)
    assert answer.text == "From the sources, see [1] and ."  # the invented [9] is dropped
    assert answer.cited == answer.citations[:1]
    system, user = rag.generator.calls[-1]
    assert system["content"] == SYSTEM_PROMPT and "do not know" in SYSTEM_PROMPT
    for c in answer.citations:
        assert f"[{c.number}] ({c.source}, {c.title}) {c.text}" in user["content"]
        stored = rag.collection.get([f"{c.source}#{c.chunk}"]).metadata[0]
        assert stored["text"] == c.text
    assert q in user["content"]
    assert {"embed_ms", "search_ms", "generate_ms", "total_ms"} <= answer.timings.keys()
    assert "[1] for" in answer.format()


def test_stream_yields_pieces_then_answer(rag):
    events = list(rag.ask_stream("while loop condition", k=2))
    assert isinstance(events[-1], Answer)
    assert events[:-1] == ["From the sources, ", "see [1]", " and [9]", "."]


def test_threshold_and_filter_respected(rag):
    calls = len(rag.generator.calls)
    answer = rag.ask("How does the for statement iterate?", min_score=0.99)
    assert answer.text == UNKNOWN_ANSWER and answer.citations == [] and answer.finish_reason == "no_sources"
    assert len(rag.generator.calls) == calls  # the model is not asked without sources
    low = rag.ask("How does the for statement iterate?", k=8, min_score=0.2, use_cache=False)
    assert low.citations and all(c.score >= 0.2 for c in low.citations)
    filtered = rag.ask("How does the for statement iterate?", k=5, filter={"category": "literal"})
    assert filtered.citations and {c.source for c in filtered.citations} <= {"integers", "strings"}


def test_mmr_prefers_diverse_chunks():
    emb = BloomEmbedder()
    col = shoal.Database().create_collection("rag", dim=emb.dim)
    pipe = RagPipeline(col, emb, EchoGenerator())
    text = "The for statement iterates over the items of any sequence in order."
    pipe.ingest([Document(text, "a"), Document(text, "b"),
                 Document("A for loop can iterate over a dict, a range or a generator.", "c")])
    plain = pipe.retrieve("for statement iterates over the items of a sequence", k=2)
    assert {c.source for c in plain} == {"a", "b"}
    diverse = pipe.retrieve("for statement iterates over the items of a sequence", k=2, use_mmr=True, mmr_lambda=0.5)
    assert diverse[0].source in {"a", "b"} and diverse[1].source == "c"


def test_mmr_function():
    q = np.array([1.0, 0.0], np.float32)
    c = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]], np.float32)
    assert mmr(q, c, 2, lambda_=1.0) == [0, 1]
    assert mmr(q, c, 2, lambda_=0.3) == [0, 2]
    with pytest.raises(InvalidArgumentError):
        mmr(q, c, 2, lambda_=2.0)


def test_reingest_replaces_and_delete_removes(rag):
    n_for = rag.collection.count({"source": "for"})
    assert n_for > 1
    total = rag.collection.count()
    report = rag.ingest([Document("The for statement is short now.", "for", {"category": "statement"})])
    assert report.chunks == 1 and report.removed == n_for - 1
    assert rag.collection.count({"source": "for"}) == 1
    assert rag.collection.get(["for#0"]).metadata[0]["text"] == "The for statement is short now."
    assert rag.collection.count() == total - n_for + 1
    assert rag.delete_source("for") == 1
    assert rag.collection.count({"source": "for"}) == 0
    assert rag.collection.count() == total - n_for


def test_ingest_scrubs_pii_and_validates_before_writing():
    emb = BloomEmbedder()
    col = shoal.Database().create_collection("rag", dim=emb.dim)
    pipe = RagPipeline(col, emb, scrub=True)
    r = pipe.ingest([Document("Write to ann@example.org or call 555-123-4567.", "contact")])
    assert (r.emails_scrubbed, r.phones_scrubbed) == (1, 1)
    assert col.get(["contact#0"]).metadata[0]["text"] == "Write to [EMAIL] or call [PHONE]."
    with pytest.raises(InvalidArgumentError):
        pipe.ingest([Document("fine", "ok"), Document("bad", "")])
    assert col.count() == 1
    with pytest.raises(shoal.DimensionMismatchError):
        RagPipeline(shoal.Database().create_collection("x", dim=8), emb)


def test_semantic_cache_hit_miss_and_invalidation(rag):
    first = rag.ask("How does the for statement iterate?", k=2)
    calls = len(rag.generator.calls)
    assert not first.cached
    hit = rag.ask("how does the for statement iterate", k=2)  # near-identical wording
    assert hit.cached and hit.text == first.text and hit.citations == first.citations
    assert hit.timings["cache_similarity"] >= 0.9 and len(rag.generator.calls) == calls
    miss = rag.ask("What integer literals exist?", k=2)
    assert not miss.cached
    other_scope = rag.ask("How does the for statement iterate?", k=3)  # other retrieval settings: no reuse
    assert not other_scope.cached
    unrelated = {c.source for c in first.citations} ^ set(TOPICS)
    rag.ingest([Document("Unrelated text about nothing.", sorted(unrelated)[0])])
    assert rag.ask("how does the for statement iterate", k=2).cached  # its sources did not change
    rag.ingest([Document(topics.topics["for"] + " Changed.", first.citations[0].source)])
    assert not rag.ask("how does the for statement iterate", k=2).cached
    assert rag.cache.hits == 2


def test_cache_eviction_and_unanswered_entries():
    cache = SemanticCache(4, threshold=0.99, max_entries=2)
    e = np.eye(4, dtype=np.float32)
    cache.put(e[0], "a", ["s1"])
    cache.put(e[1], "b", [])
    cache.put(e[2], "c", ["s2"])
    assert len(cache) == 2 and cache.lookup(e[0]) is None
    assert cache.lookup(e[2]) == ("c", pytest.approx(1.0))
    assert cache.lookup(e[2], scope="other") is None
    assert cache.invalidate_sources(["s9"]) == 1  # the unanswered entry "b"
    assert cache.invalidate_sources(["s2"]) == 1 and len(cache) == 0


def test_plain_strings_get_content_sources():
    emb = BloomEmbedder()
    pipe = RagPipeline(shoal.Database().create_collection("rag", dim=emb.dim), emb)
    pipe.ingest(["first text."])
    pipe.ingest(["second text.", "first text."])  # a separate call adds, the same text replaces
    assert pipe.collection.count() == 2
    with pytest.raises(InvalidArgumentError):
        pipe.ingest([42])
