"""RagPipeline and SemanticCache paths no other test took: bad k and questions, a pipeline without a
generator, shared ingest metadata, cache validation, eviction and clear()."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal import InvalidArgumentError
from shoal.rag import BloomEmbedder, Document, RagPipeline, SemanticCache
from shoal.rag.pipeline import UNKNOWN_ANSWER

DOCS = [Document("The for statement iterates over the items of a sequence.", "for", {"kind": "loop"}),
        Document("The while statement repeats while a condition is true.", "while"),
        Document("Integer literals are written in decimal, hex, octal or binary.", "ints", {"kind": "literal"})]


class RecordingGenerator:
    def __init__(self) -> None:
        self.calls = 0

    def stream(self, messages, params=None):  # noqa: ANN001, ANN201
        self.calls += 1
        from shoal.rag.generation import TokenEvent

        yield TokenEvent(0, "See [1].")


@pytest.fixture
def pipe() -> RagPipeline:
    emb = BloomEmbedder()
    col = shoal.Database().create_collection("rag", dim=emb.dim, metric="cosine")
    p = RagPipeline(col, emb, RecordingGenerator())
    p.ingest(DOCS, metadata={"corpus": "reference", "kind": "default"})
    return p


@pytest.mark.parametrize("k", [0, -1, True, 2.5, "3", None, 10**9])
def test_retrieve_with_bad_k_is_a_clear_error(pipe: RagPipeline, k) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgumentError, match="k"):
        pipe.retrieve("for loops", k=k)
    with pytest.raises(InvalidArgumentError, match="k"):
        pipe.ask("for loops", k=k)
    assert pipe.generator.calls == 0


@pytest.mark.parametrize("question", ["", "   \n", None, 42])
def test_empty_question_is_refused_before_any_work(pipe: RagPipeline, question) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgumentError, match="non-empty string"):
        pipe.ask(question)
    assert pipe.generator.calls == 0


def test_shared_ingest_metadata_is_stored_and_filterable(pipe: RagPipeline) -> None:
    got = pipe.collection.get(["for#0", "while#0", "ints#0"]).metadata
    assert [m["corpus"] for m in got] == ["reference"] * 3
    assert [m["kind"] for m in got] == ["loop", "default", "literal"]  # a document's own fields win
    hits = pipe.retrieve("statement", k=3, filter={"kind": "default"})
    assert [c.source for c in hits] == ["while"]
    assert pipe.collection.count({"corpus": "reference"}) == 3


def test_a_pipeline_without_a_generator_retrieves_but_cannot_answer() -> None:
    emb = BloomEmbedder()
    p = RagPipeline(shoal.Database().create_collection("rag", dim=emb.dim), emb)
    p.ingest(DOCS)
    assert p.retrieve("the for statement iterates", k=1)[0].source == "for"
    with pytest.raises(InvalidArgumentError, match="no generator"):
        p.ask("the for statement iterates")
    unknown = p.ask("the for statement iterates", min_score=0.9999)  # no source: no model needed
    assert unknown.text == UNKNOWN_ANSWER and unknown.finish_reason == "no_sources"


@pytest.mark.parametrize("kwargs", [{"threshold": 1.5}, {"threshold": -1.01}, {"threshold": float("nan")},
                                    {"threshold": "0.9"}, {"max_entries": 0}, {"max_entries": -3},
                                    {"max_entries": 2.5}, {"max_entries": True}])
def test_semantic_cache_validates_its_settings(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        SemanticCache(8, **kwargs)


def _unit(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1.0
    return v


def test_semantic_cache_eviction_scope_and_clear() -> None:
    cache: SemanticCache[str] = SemanticCache(8, threshold=0.99, max_entries=2)
    cache.put(_unit(0), "a", ["s0"])
    cache.put(_unit(1), "b", ["s1"], scope="other")
    assert cache.lookup(_unit(0)) == ("a", pytest.approx(1.0))
    assert cache.lookup(_unit(1)) is None  # another scope
    assert cache.lookup(_unit(1), scope="other")[0] == "b"
    cache.lookup(_unit(0))  # "a" is now the most recently used
    cache.put(_unit(2), "c", [])
    assert len(cache) == 2 and cache.lookup(_unit(1), scope="other") is None  # "b" evicted, not "a"
    assert cache.invalidate_sources(["nothing"]) == 1  # the unanswered "c" goes on any change
    assert cache.lookup(_unit(0))[0] == "a" and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.lookup(_unit(0)) is None and len(cache._entries) == 0
    cache.clear()  # clearing an empty cache is fine
    cache.put(_unit(3), "d", ["s3"])  # and it works after a clear
    assert cache.lookup(_unit(3))[0] == "d" and cache.hits >= 4 and cache.misses >= 3
