"""The in-process stand-in for ``grpc.ServicerContext`` that HTTP calls hand to the servicers.

The servicers (``rpc/server.py``, ``rpc/query_service.py``) use only the parts below:
``abort`` (through ``status.abort_with``), trailing metadata (the ``shoal-error`` class
name), ``invocation_metadata`` (the API key, e.g. for the Query service's rate limit) and
``peer``. ``abort`` raises :class:`CallAborted`, which the HTTP layer turns into a status.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from ..status import ERROR_TRAILER


class CallAborted(Exception):
    """A servicer ended the call with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, details: str, error_class: str | None) -> None:
        super().__init__(details)
        self.code, self.details, self.error_class = code, details, error_class


class HttpCallContext:
    """What one HTTP request looks like to a servicer: its headers as metadata and its peer."""

    def __init__(self, metadata: Sequence[tuple[str, str]], peer: str) -> None:
        self._metadata = tuple(metadata)
        self._peer = peer
        self._trailing: tuple[tuple[str, Any], ...] = ()
        self._code = grpc.StatusCode.OK
        self._details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = tuple(metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details
        error_class = next((v for k, v in self._trailing if k == ERROR_TRAILER), None)
        raise CallAborted(code, details, error_class)
