"""The server's request path: each method's handler is wrapped once, when its service is registered.

Before issue 27 three ``grpc.ServerInterceptor``s (access log, guard, decode) ran on every call and
each built a new wrapped handler for it: ~50-85 µs of a 430-515 µs request (lead's profile, 100k
GloVe rows). Now :class:`Registrar` stands in for the ``grpc.Server`` that a generated
``add_*Servicer_to_server`` registers on and wraps every method handler once. Per call the handler then
does only what the call needs:

* the guard (``GuardInterceptor.refusal`` in ``rpc/server.py``): UNAVAILABLE while shutting down,
  UNAUTHENTICATED without the API key; health and reflection stay open;
* the request bytes parsed by our code (``rpc/decode.py``), so bytes that do not decode are
  INVALID_ARGUMENT saying why (grpcio's own deserializer answers INTERNAL);
* ``x-request-id`` echoed in the trailers (the client's, else a new one);
* one access-log line (``shoal.rpc.access`` at INFO: request id, method, code, latency, peer) only
  when that logger is enabled for INFO (``shoal serve --access-log``; off by default).

``forward`` (``rpc/workers.py``) replaces a method's servicer by a call to another process with the
same bytes; the guard and the log still run here, decoding happens where the method is served.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc

from ..engine.errors import ShoalError
from .decode import parse_request
from .status import abort_with

access_log = logging.getLogger("shoal.rpc.access")

#: A method's servicer replaced by another callable of the same kind (raw request bytes in, raw response out).
Forward = Callable[[str, grpc.RpcMethodHandler], "grpc.RpcMethodHandler | None"]


class CallDetails(NamedTuple):
    """What the guard looks at (the shape of ``grpc.HandlerCallDetails``)."""

    method: str
    invocation_metadata: Any


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "x-request-id":
            return value
    return os.urandom(8).hex()


def _finish(context: grpc.ServicerContext, method: str, request_id: str, start: float, failed: bool) -> None:
    code = (getattr(context.code(), "name", None) or "UNKNOWN") if failed else "OK"
    access_log.info("rpc request_id=%s method=%s code=%s latency_ms=%.2f peer=%s", request_id, method, code,
                    (time.perf_counter() - start) * 1e3, context.peer())


def _aborting_on_error(responses: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """A streamed response that ends the call with the status of a ShoalError raised while streaming."""
    try:
        yield from responses
    except ShoalError as exc:
        abort_with(context, exc)


_KINDS = (("unary_unary", grpc.unary_unary_rpc_method_handler),
          ("unary_stream", grpc.unary_stream_rpc_method_handler),
          ("stream_unary", grpc.stream_unary_rpc_method_handler),
          ("stream_stream", grpc.stream_stream_rpc_method_handler))


def wrap_handler(method: str, handler: grpc.RpcMethodHandler, refusal: Callable[[CallDetails], ShoalError | None],
                 request_class: Any) -> grpc.RpcMethodHandler:
    """``handler`` with the per-call work above around it. ``request_class`` None: the handler keeps its
    own deserializer (a method our descriptor pool does not know, or a forwarded one: raw bytes)."""
    streaming_in, streaming_out = handler.request_streaming, handler.response_streaming
    if request_class is None:
        parse = None
    elif streaming_in:
        def parse(requests: Iterator[bytes]) -> Iterator[Any]:
            return (parse_request(request_class, data) for data in requests)
    else:
        def parse(data: bytes) -> Any:
            return parse_request(request_class, data)
    kind, factory = next((k, f) for k, f in _KINDS if getattr(handler, k) is not None)
    behaviour = getattr(handler, kind)

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        metadata = context.invocation_metadata()
        request_id = _request_id(metadata)
        context.set_trailing_metadata((("x-request-id", request_id),))
        failed = True
        try:
            refused = refusal(CallDetails(method, metadata))
            if refused is not None:
                abort_with(context, refused)
            try:
                result = behaviour(request if parse is None else parse(request), context)
            except ShoalError as exc:  # servicers map their own errors: this one is the request's (decoding)
                abort_with(context, exc)
            failed = False
            return _aborting_on_error(result, context) if streaming_out else result
        finally:
            if access_log.isEnabledFor(logging.INFO):
                _finish(context, method, request_id, start, failed)

    return factory(run, request_deserializer=handler.request_deserializer if parse is None else None,
                   response_serializer=handler.response_serializer)


class _CachedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers are wrapped on first use and kept (methods are a fixed set)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[str, grpc.RpcMethodHandler], Any]) -> None:
        self.inner, self.wrap, self.cache = inner, wrap, {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        found = self.cache.get(details.method)
        if found is None:
            handler = self.inner.service(details)
            if handler is None:
                return None  # unknown names are not cached: a client could send any number of them
            found = self.cache[details.method] = self.wrap(details.method, handler)
        return found


class Registrar:
    """Stands in for the ``grpc.Server`` that generated ``add_*Servicer_to_server`` functions (and
    health, reflection) register on: every handler reaches the real server wrapped once.

    ``request_class(method)`` gives the message class our code parses (None: keep grpcio's
    deserializer); ``forward(method, handler)`` may swap a handler for another (``rpc/workers.py``).
    """

    def __init__(self, server: grpc.Server, refusal: Callable[[CallDetails], ShoalError | None],
                 request_class: Callable[[str], Any], forward: Forward | None = None) -> None:
        self.server, self.refusal, self.request_class, self.forward = server, refusal, request_class, forward

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        replaced = self.forward(method, handler) if self.forward is not None else None
        if replaced is not None:
            return wrap_handler(method, replaced, self.refusal, None)
        return wrap_handler(method, handler, self.refusal, self.request_class(method))

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.server.add_generic_rpc_handlers(tuple(_CachedGeneric(h, self.wrap) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """grpcio's fast path (no generic lookup per call) for the generated services."""
        self.server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()})
