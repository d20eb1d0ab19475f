"""ShoalError <-> gRPC status, in one place for the server and the client.

The server sends ``grpc_code`` of the error (engine/errors.py) as the status code,
the message as details, and the error's class name in the ``shoal-error``
trailer; the client raises that same class again (or, for a status that did not
come from a ShoalError, the most general ShoalError class with that code).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

from ..engine import errors
from ..engine.echo import clip

ERROR_TRAILER = "shoal-error"
#: Longest status message sent. gRPC carries it in a header (8 KiB by default): a longer one made
#: the client see RESOURCE_EXHAUSTED about header size instead of the real status (issue 15).
MAX_DETAILS = 2000
log = logging.getLogger("shoal.rpc")


def _shoal_classes() -> dict[str, type[errors.ShoalError]]:
    return {name: cls for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, errors.ShoalError)}


_CLASSES = _shoal_classes()
# The most general class for each code: the one whose base classes carry another code.
_BY_CODE: dict[str, type[errors.ShoalError]] = {}
for _cls in _CLASSES.values():
    if all(getattr(base, "grpc_code", None) != _cls.grpc_code for base in _cls.__bases__):
        _BY_CODE.setdefault(_cls.grpc_code, _cls)


def status_code(exc: errors.ShoalError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.INTERNAL)


def abort_with(context: grpc.ServicerContext, exc: errors.ShoalError) -> None:
    """Abort the call with the status of ``exc`` (raises, as ``context.abort`` does)."""
    earlier = tuple(context.trailing_metadata() or ()) if hasattr(context, "trailing_metadata") else ()
    context.set_trailing_metadata((*earlier, (ERROR_TRAILER, type(exc).__name__)))
    context.abort(status_code(exc), clip(str(exc), MAX_DETAILS))


def error_from_rpc(err: grpc.RpcError) -> errors.ShoalError:
    """The ShoalError a failed call stands for (the server's class when it sent one)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = err.details() if hasattr(err, "details") else str(err)
    name = next((v for k, v in (err.trailing_metadata() or ()) if k == ERROR_TRAILER), None) \
        if hasattr(err, "trailing_metadata") else None
    cls = _CLASSES.get(name) if name else None
    if cls is None:
        cls = _BY_CODE.get(code.name, errors.ShoalError)
    exc = cls(message or code.name)
    exc.grpc_code = code.name  # the code seen on the wire, even for the base class
    return exc


def handle_errors(method: Callable) -> Callable:
    """Map exceptions of a servicer method to statuses (the only place that does)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except errors.ShoalError as exc:
            abort_with(context, exc)
        except Exception:  # a bug, not a bad request: log it, say INTERNAL
            log.exception("unhandled error in %s", method.__qualname__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}; see server log")

    return wrapper
