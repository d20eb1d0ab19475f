"""A gRPC + HTTP server pair in this process over one Database, and a small JSON client for it."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import shoal
from shoal.rpc.http import serve_http
from shoal.rpc.server import build_server


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


class JsonClient:
    """Plain urllib, so the tests see exactly what a curl user would."""

    def __init__(self, base: str, *, api_key: str | None = None, context: ssl.SSLContext | None = None) -> None:
        self.base, self.api_key, self.context = base, api_key, context

    def raw(self, verb: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        headers = {"content-type": "application/json", **(headers or {})}
        if self.api_key:
            headers.setdefault("authorization", f"Bearer {self.api_key}")
        request = urllib.request.Request(self.base + path, data=data, method=verb, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, raw, got = exc.code, exc.read(), dict(exc.headers)
        got = {k.lower(): v for k, v in got.items()}
        body = json.loads(raw) if got.get("content-type", "").startswith("application/json") and raw else raw
        return Reply(status, body, got)

    def __call__(self, verb: str, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.raw(verb, path, None if body is None else json.dumps(body).encode(), **kw)

    def ok(self, verb: str, path: str, body: Any = None) -> Any:
        reply = self(verb, path, body)
        assert reply.status == 200, reply.body
        return reply.body


@dataclass
class Servers:
    db: shoal.Database
    grpc: Any
    http: Any

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc.port}"


@contextmanager
def servers(db: shoal.Database | None = None, *, max_body_bytes: int = 8 << 20, **grpc_options: Any
            ) -> Iterator[Servers]:
    db = db if db is not None else shoal.Database()
    grpc_server = build_server(db, port=0, **grpc_options)
    http = serve_http(grpc_server, port=0, max_body_bytes=max_body_bytes)
    try:
        yield Servers(db, grpc_server, http)
    finally:
        http.stop()
        grpc_server.stop(grace=1)
