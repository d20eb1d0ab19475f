"""shoal.v1.Query end to end against a real `shoal serve --rag` subprocess."""
import grpc
import numpy as np
import pydoc_data.topics as topics
import pytest

import shoal
from shoal.engine.errors import ResourceExhaustedError
from shoal.rag import Answer, BloomEmbedder, Document, RagPipeline
from shoal.rag.pipeline import UNKNOWN_ANSWER
from shoal.rpc.query_client import QueryClient
from shoal.rpc.v1 import query_pb2, query_pb2_grpc
from tests.rpc.conftest import start_server


@pytest.fixture(scope="module")
def rag_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("rag"), "--rag", "--rag-embedder", "bloom",
                       "--rag-max-new-tokens", "3", "--rag-rate", "100", "--rag-burst", "100")
    with shoal.Client(srv.target, timeout=30) as client:
        emb = BloomEmbedder()
        col = client.create_collection("rag", dim=emb.dim, metric="cosine")
        RagPipeline(col, emb, chunk_words=50, overlap_words=10).ingest(  # ingest through the client SDK
            [Document(topics.topics[t], t, {"category": c}) for t, c in
             [("for", "statement"), ("while", "statement"), ("integers", "literal")]])
        yield srv, col
    srv.stop()


def test_embed_matches_local_embedder(rag_server):
    srv, _ = rag_server
    q = QueryClient(srv.target)
    texts = ["for loops", "integer literals"]
    np.testing.assert_array_equal(q.embed(texts), BloomEmbedder().encode(texts))
    q.close()


def test_ask_streams_tokens_then_answer_with_retrieved_citations(rag_server):
    srv, col = rag_server
    q = QueryClient(srv.target)
    question = "How does the for statement iterate over an iterable?"
    events = list(q.ask_stream(question, k=2, min_score=0.1))
    answer = events[-1]
    assert isinstance(answer, Answer) and all(isinstance(e, str) for e in events[:-1])
    assert len(events) >= 2 and answer.finish_reason == "stop" and answer.text.strip()
    expected = col.search(BloomEmbedder().encode([question])[0], k=2)
    assert [(c.source, c.chunk) for c in answer.citations] == [(m["source"], m["chunk"]) for m in expected.metadata]
    assert answer.timings["generate_ms"] > 0
    again = q.ask(question, k=2, min_score=0.1)  # the server's semantic cache
    assert again.cached and again.text == answer.text
    none = q.ask(question, k=2, filter={"category": "literal"}, min_score=0.9)
    assert none.text == UNKNOWN_ANSWER and none.citations == []
    q.close()


def test_rate_limit_is_per_key_and_resource_exhausted(tmp_path):
    srv = start_server(tmp_path, "--rag", "--rag-embedder", "bloom", "--rag-rate", "0.01", "--rag-burst", "2")
    try:
        alice = QueryClient(srv.target, api_key="alice")
        alice.embed(["a"])
        alice.embed(["b"])
        with pytest.raises(ResourceExhaustedError, match="rate limit"):
            alice.embed(["c"])
        with pytest.raises(ResourceExhaustedError):
            list(alice.ask_stream("anything"))
        QueryClient(srv.target, api_key="bob").embed(["d"])  # another key, another bucket
        with grpc.insecure_channel(srv.target) as channel:  # the raw status code on the wire
            stub = query_pb2_grpc.QueryStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Embed(query_pb2.EmbedRequest(texts=["x"]), metadata=(("x-api-key", "alice"),))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        srv.stop()


def test_cli_ask_through_server(rag_server, capsys):
    from shoal.cli import main

    srv, _ = rag_server
    assert main(["ask", "How does the for statement iterate?", "--server", srv.target, "-k", "1",
                 "--max-new-tokens", "2", "--min-score", "0.1", "--stream"]) == 0
    out = capsys.readouterr().out
    assert "[1] for chunk " in out and "generate_ms" in out


def test_local_pipeline_over_client_collection(rag_server):
    """The pipeline only needs the Collection API: retrieval with MMR through shoal.Client."""
    srv, _ = rag_server
    with shoal.Client(srv.target, timeout=30) as client:
        pipe = RagPipeline(client.get_collection("rag"), BloomEmbedder())
        plain = pipe.retrieve("integer literals", k=3, filter={"category": "literal"})
        diverse = pipe.retrieve("integer literals", k=3, filter={"category": "literal"}, use_mmr=True)
        assert plain and {c.source for c in plain + diverse} == {"integers"}
        assert diverse[0] == plain[0]  # MMR keeps the most relevant chunk first
