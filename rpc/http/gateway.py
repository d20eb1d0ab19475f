"""HTTP calls onto the gRPC servicers: one implementation of the semantics behind both protocols.

A :class:`Gateway` lists every method of the services a :class:`~shoal.rpc.server.ShoalServer`
serves, read from the service descriptors (so a method added to the .proto files is served
over HTTP as soon as its servicer implements it), and runs a call the way gRPC does: the
same API-key and shutdown check (``GuardInterceptor.refusal``), the JSON body decoded into
the same request message (``jsoncodec``), the same servicer method with an in-process
context, the response encoded back. Errors keep their gRPC code and ShoalError class and
get an HTTP status from :data:`HTTP_STATUS`.

Streaming: a client-streaming method (``Points.UpsertStream``) takes a JSON array of request
messages, all decoded before the first is applied; a server-streaming one (``Query.Ask``)
answers NDJSON, one message per line, and an error after the first line comes as a last
``{"error": ...}`` line (the status line was already sent).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor

from ...engine.echo import clip, shorten
from ...engine.errors import InvalidArgumentError, ResourceExhaustedError, ShoalError
from ..status import MAX_DETAILS, status_code
from . import jsoncodec
from .context import CallAborted, HttpCallContext

log = logging.getLogger("shoal.rpc.http")

#: gRPC status -> HTTP status (as grpc-gateway and Google's API design guide map them, except
#: FAILED_PRECONDITION: 409, the state of the resource conflicts with the call, e.g. a closed or
#: read-only collection; 400 would tell the client to fix its request).
HTTP_STATUS: dict[str, int] = {
    "OK": 200, "INVALID_ARGUMENT": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409, "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNKNOWN": 500, "INTERNAL": 500, "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
#: Classes whose status says more than their code's: a full disk is the server's problem, not a rate.
CLASS_STATUS: dict[str, int] = {"DiskFullError": 507}


class HttpError(Exception):
    """A failed call as HTTP: status, gRPC code name, ShoalError class name and message."""

    def __init__(self, status: int, code: str, error_class: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.error_class, self.message = status, code, error_class, message

    @classmethod
    def of(cls, code: str, error_class: str | None, message: str) -> "HttpError":
        status = CLASS_STATUS.get(error_class or "", HTTP_STATUS.get(code, 500))
        return cls(status, code, error_class, clip(message, MAX_DETAILS))

    @classmethod
    def from_shoal(cls, exc: ShoalError) -> "HttpError":
        return cls.of(status_code(exc).name, type(exc).__name__, str(exc))

    @classmethod
    def from_aborted(cls, aborted: CallAborted) -> "HttpError":
        return cls.of(aborted.code.name, aborted.error_class, aborted.details)

    @classmethod
    def too_large(cls, size: int | str, limit: int) -> "HttpError":
        exc = ResourceExhaustedError(f"request body of {size} bytes is over this server's limit of {limit} bytes "
                                     "(shoal serve --max-message-mb); split the upsert into smaller requests")
        error = cls.from_shoal(exc)
        error.status = 413
        return error

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "class": self.error_class, "message": self.message,
                          "http_status": self.status}}


@dataclass(frozen=True)
class Method:
    """One RPC as the gateway serves it."""

    service: str  # full name, e.g. "shoal.v1.Points"
    descriptor: MethodDescriptor
    handler: Any  # the servicer's bound method
    request_class: type
    response_class: type

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def path(self) -> str:
        """The gRPC method path, which is also its HTTP route (``POST /shoal.v1.Points/Upsert``)."""
        return f"/{self.service}/{self.name}"

    @property
    def client_streaming(self) -> bool:
        return self.descriptor.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.descriptor.server_streaming


def _implemented(servicer: Any, name: str) -> Any:
    """The servicer's method ``name``, or None while only the generated base class has it (UNIMPLEMENTED)."""
    handler = getattr(servicer, name, None)
    for base in type(servicer).__mro__:
        if name in vars(base):
            return handler if not base.__module__.endswith("_pb2_grpc") else None
    return None


class Gateway:
    """The methods of a running server's services, callable with JSON."""

    def __init__(self, servicers: Mapping[str, Any], guard: Any) -> None:
        self.guard = guard
        self.methods: dict[str, Method] = {}
        pool = descriptor_pool.Default()
        for service_name, servicer in servicers.items():
            service = pool.FindServiceByName(service_name)
            for desc in service.methods:
                handler = _implemented(servicer, desc.name)
                if handler is not None:
                    method = Method(service_name, desc, handler, message_factory.GetMessageClass(desc.input_type),
                                    message_factory.GetMessageClass(desc.output_type))
                    self.methods[method.path] = method

    def find(self, service: str, name: str) -> Method | None:
        return self.methods.get(f"/{service}/{name}")

    def call(self, method: Method, body: bytes, metadata: list[tuple[str, str]], peer: str,
             fields: Mapping[str, Any] | None = None, reshape: Callable[[Any], Any] | None = None) -> Any:
        """Run ``method``: a JSON-ready response (an iterator of them when it streams), or raise HttpError.

        ``fields`` (from the URL of a REST alias) are merged into the body; a body that
        sets one of them to another value is refused. ``reshape`` rewrites a REST alias's
        shorthand body into the request's shape first.
        """
        refusal = self.guard.refusal(SimpleNamespace(method=method.path, invocation_metadata=metadata))
        if refusal is not None:
            raise HttpError.from_shoal(refusal)
        try:
            request = self.decode(method, body, fields or {}, reshape)
        except ShoalError as exc:
            raise HttpError.from_shoal(exc) from None
        context = HttpCallContext(metadata, peer)
        try:
            response = method.handler(request, context)
            if method.server_streaming:
                return self._stream(iter(response))
        except CallAborted as aborted:
            raise HttpError.from_aborted(aborted) from None
        except Exception as exc:  # a servicer without handle_errors: map it the way gRPC's interceptors do
            raise _unhandled(method, exc) from None
        return jsoncodec.to_json(response)

    def decode(self, method: Method, body: bytes, fields: Mapping[str, Any],
               reshape: Callable[[Any], Any] | None = None) -> Any:
        """The request message (an iterator of them for a client-streaming method), all decoded and checked."""
        payload = parse_json(body)
        if reshape is not None:
            payload = reshape(payload)
        if method.client_streaming:
            if not isinstance(payload, list):
                raise InvalidArgumentError(f"{method.path} takes a JSON array of {method.request_class.DESCRIPTOR.name} "
                                           f"messages (applied in order), got {shorten(payload)}")
            requests = [jsoncodec.from_json(method.request_class, with_fields(item, fields, f"body[{i}]"),
                                            f"body[{i}]") for i, item in enumerate(payload)]
            return iter(requests)
        return jsoncodec.from_json(method.request_class, with_fields(payload, fields))

    def _stream(self, responses: Iterator[Any]) -> Iterator[Any]:
        """The streamed responses; the first is taken now, so an early error still gets its HTTP status."""
        try:
            first = next(responses)
        except StopIteration:
            return iter(())
        return self._rest(first, responses)

    @staticmethod
    def _rest(first: Any, responses: Iterator[Any]) -> Iterator[Any]:
        yield jsoncodec.to_json(first)
        try:
            for response in responses:
                yield jsoncodec.to_json(response)
        except CallAborted as aborted:
            yield HttpError.from_aborted(aborted).body()
        except Exception as exc:
            yield _unhandled(None, exc).body()


def _unhandled(method: Method | None, exc: Exception) -> HttpError:
    """An exception that no servicer mapped: its own status if a ShoalError, else INTERNAL (logged, not sent)."""
    if isinstance(exc, CallAborted):
        return HttpError.from_aborted(exc)
    if isinstance(exc, ShoalError):
        return HttpError.from_shoal(exc)
    where = method.path if method is not None else "a streamed call"
    log.exception("unhandled error in %s", where)
    return HttpError.of("INTERNAL", None, f"internal error in {where}; see server log")


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body (an empty body is ``{}``)."""
    if not body.strip():
        return {}
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"request body is not UTF-8 (byte {exc.start}); send JSON") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("request body nests too deeply") from None


def with_fields(payload: Any, fields: Mapping[str, Any], where: str = "body") -> Any:
    """``payload`` (a JSON object) with ``fields`` from the URL added; a conflicting value is an error."""
    if not fields:
        return payload
    if not isinstance(payload, dict):
        raise InvalidArgumentError(f"{where} must be a JSON object, got {shorten(payload)}")
    for key, value in fields.items():
        if key in payload and payload[key] != value:
            raise InvalidArgumentError(f"{where}.{key} is {shorten(payload[key])} but the URL says {shorten(value)}")
    return {**payload, **fields}

