"""The ``shoal.v1.Query`` service: ``Ask`` (streamed RAG answers with citations) and ``Embed``.

``shoal serve --rag`` calls :func:`enable_query_service` before building the
server; it registers one ``ServiceSpec`` whose servicer answers from the served
database with a :class:`~shoal.rag.RagPipeline` per collection (one embedder,
one generator and one semantic cache per collection, loaded on first use, so a
server that only embeds never loads the LLM). Each API key (the bearer token or
``x-api-key``; callers without one share the key ``anonymous``) has a token
bucket; a call over its rate is refused with RESOURCE_EXHAUSTED before any work.
"""
from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import grpc

from ..engine.errors import ShoalError
from ..rag.ratelimit import RateLimiter
from . import convert
from .server import ServerState, ServiceSpec, api_key_of, handle_errors, register_service
from .status import abort_with
from .v1 import query_pb2, query_pb2_grpc

log = logging.getLogger("shoal.rpc.query")

SERVICE_NAME = "shoal.v1.Query"


@dataclass(frozen=True)
class QueryConfig:
    collection: str = "rag"
    embedder: str = "minilm"
    model: str | None = None  # GGUF path; None: SmolLM2-135M-Instruct
    numerics: str = "float32"  # or "llama.cpp": llama.cpp's tokens bit for bit, slower
    max_new_tokens: int = 128
    rate: float = 5.0  # requests per second per API key
    burst: float = 10.0
    cache_threshold: float = 0.95


def rate_key(context: grpc.ServicerContext) -> str:
    """Whose token bucket a call draws from: its API key, or the shared ``anonymous``."""
    return api_key_of(context.invocation_metadata()) or "anonymous"


class QueryServicer(query_pb2_grpc.QueryServicer):
    def __init__(self, state: ServerState, config: QueryConfig) -> None:
        self.state, self.config = state, config
        self.limiter = RateLimiter(config.rate, config.burst)
        self._lock = threading.Lock()
        self._embedder: Any = None
        self._generator: Any = None
        self._pipelines: dict[str, Any] = {}

    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                from ..rag import load_embedder

                self._embedder = load_embedder(self.config.embedder)
            return self._embedder

    def pipeline(self, name: str) -> Any:
        from ..rag import RagPipeline, SemanticCache
        from ..rag.generation import SamplingParams, load_generator

        col = self.state.db.get_collection(name or self.config.collection)
        embedder = self.embedder()
        with self._lock:
            pipe = self._pipelines.get(col.name)
            if pipe is None or pipe.collection is not col:
                if self._generator is None:
                    self._generator = load_generator(self.config.model, numerics=self.config.numerics)
                pipe = RagPipeline(col, embedder, self._generator,
                                   cache=SemanticCache(embedder.dim, self.config.cache_threshold),
                                   sampling=SamplingParams(max_new_tokens=self.config.max_new_tokens))
                self._pipelines[col.name] = pipe
            return pipe

    def Ask(self, request: query_pb2.AskRequest, context: grpc.ServicerContext) -> Iterator[query_pb2.AskEvent]:
        # A generator: errors must be mapped here (handle_errors only sees the generator being created).
        try:
            self.limiter.check(rate_key(context))
            from ..rag.generation import SamplingParams

            pipe = self.pipeline(request.collection)
            sampling = SamplingParams(max_new_tokens=request.max_new_tokens or self.config.max_new_tokens,
                                      temperature=request.temperature).validate()
            stream = pipe.ask_stream(request.question, request.k or 4,
                                     filter=convert.filter_from_proto(request.filter) if request.HasField("filter") else None,
                                     min_score=request.min_score, use_mmr=request.mmr, mmr_lambda=request.mmr_lambda or 0.5,
                                     sampling=sampling, use_cache=not request.no_cache)
            for event in stream:
                if isinstance(event, str):
                    yield query_pb2.AskEvent(token=event)
                else:
                    yield query_pb2.AskEvent(answer=answer_to_proto(event))
        except ShoalError as exc:
            abort_with(context, exc)
        except Exception:
            log.exception("unhandled error in Ask")
            context.abort(grpc.StatusCode.INTERNAL, "internal error in Ask; see server log")

    @handle_errors
    def Embed(self, request: query_pb2.EmbedRequest, context: grpc.ServicerContext) -> query_pb2.EmbedResponse:
        self.limiter.check(rate_key(context))
        embedder = self.embedder()
        x = embedder.encode(list(request.texts))
        return query_pb2.EmbedResponse(vectors=convert.vectors_to_proto(x, embedder.dim), embedder=embedder.name)


def answer_to_proto(answer: Any) -> query_pb2.AskAnswer:
    return query_pb2.AskAnswer(
        text=answer.text, cached=answer.cached, finish_reason=answer.finish_reason,
        timings={k: float(v) for k, v in answer.timings.items()},
        citations=[query_pb2.Citation(number=c.number, source=c.source, chunk=c.chunk, score=c.score, text=c.text,
                                      title=c.title or "") for c in answer.citations])


def enable_query_service(config: QueryConfig) -> None:
    """Serve ``shoal.v1.Query`` from every server built afterwards."""
    register_service(ServiceSpec(SERVICE_NAME, query_pb2_grpc.add_QueryServicer_to_server,
                                 lambda state: QueryServicer(state, config)))


def enable_from_args(args: argparse.Namespace) -> None:
    """Enable the service when ``shoal serve`` got ``--rag`` (options from ``shoal.rag.cli.add_serve_arguments``)."""
    if getattr(args, "rag", False):
        given = {f: getattr(args, f"rag_{f}") for f in QueryConfig.__dataclass_fields__ if getattr(args, f"rag_{f}", None) is not None}
        enable_query_service(QueryConfig(**given))
