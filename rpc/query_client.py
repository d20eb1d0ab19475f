"""Client side of ``shoal.v1.Query``: streamed answers and embeddings from a ``shoal serve --rag`` server."""
from __future__ import annotations

import argparse
from typing import Any, Iterator

import grpc
import numpy as np

from ..rag.pipeline import Answer, Citation
from . import convert
from .status import error_from_rpc
from .v1 import query_pb2, query_pb2_grpc


class QueryClient:
    """``ask_stream`` yields text pieces then an :class:`~shoal.rag.Answer`, like ``RagPipeline.ask_stream``."""

    def __init__(self, target: str, *, api_key: str | None = None, timeout: float = 600.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = query_pb2_grpc.QueryStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.timeout = timeout

    def ask_stream(self, question: str, k: int = 4, *, collection: str = "", filter: Any = None,
                   min_score: float = 0.0, use_mmr: bool = False, mmr_lambda: float = 0.5,
                   max_new_tokens: int = 0, use_cache: bool = True) -> Iterator[str | Answer]:
        req = query_pb2.AskRequest(question=question, collection=collection, k=k, min_score=min_score, mmr=use_mmr,
                                   mmr_lambda=mmr_lambda, max_new_tokens=max_new_tokens, no_cache=not use_cache)
        if filter is not None:
            req.filter.CopyFrom(convert.filter_to_proto(filter))
        try:
            for event in self._stub.Ask(req, timeout=self.timeout, metadata=self._metadata):
                if event.WhichOneof("kind") == "token":
                    yield event.token
                else:
                    yield answer_from_proto(question, event.answer)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def ask(self, question: str, **kw: Any) -> Answer:
        return [e for e in self.ask_stream(question, **kw) if isinstance(e, Answer)][-1]

    def embed(self, texts: list[str]) -> np.ndarray:
        try:
            res = self._stub.Embed(query_pb2.EmbedRequest(texts=list(texts)), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        return convert.vectors_from_proto(res.vectors)

    def close(self) -> None:
        self._channel.close()


def answer_from_proto(question: str, msg: query_pb2.AskAnswer) -> Answer:
    citations = [Citation(c.number, c.source, c.chunk, c.score, c.text, c.title or None) for c in msg.citations]
    return Answer(question, msg.text, citations, dict(msg.timings), cached=msg.cached, finish_reason=msg.finish_reason)


def ask_remote(args: argparse.Namespace) -> int:
    """``shoal ask --server``: stream the answer from the server and print it with its citations."""
    from ..rag.cli import print_stream

    client = QueryClient(args.server, api_key=args.api_key or None)
    try:
        return print_stream(client.ask_stream(args.question, args.k, collection=args.collection, filter=args.filter,
                                              min_score=args.min_score, use_mmr=args.mmr,
                                              max_new_tokens=args.max_new_tokens), args.stream)
    finally:
        client.close()
