"""The HTTP/JSON server beside gRPC: a Starlette app on uvicorn, in the server's own process.

Why Starlette + uvicorn (the ``http`` extra) and not the standard library's
``ThreadingHTTPServer``: the latter is documented as not for production (no request
body or header limits of its own, a thread per connection with no bound, no graceful
shutdown of running requests, HTTP/1.1 keep-alive and chunked bodies left to the
handler), and every one of those we would have to write and maintain. uvicorn (with
httptools when installed) parses HTTP in C, bounds header sizes, drains running
requests on shutdown and serves TLS; Starlette gives routing and static files. Both are
small, typed and widely used. Servicer calls block, so they run in Starlette's worker
threads (``run_in_threadpool``), beside the gRPC pool, over the same Database.

Routes: every method at its gRPC path (``POST /shoal.v1.Points/Upsert``), the REST
aliases of ``routes.ALIASES``, ``GET /openapi.json``, ``GET /healthz`` and the console
at ``/console/`` (static files, no build step). The console, the OpenAPI document and
health stay open when auth is on (as health and reflection do over gRPC), so the console
can load and ask for the key.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...engine.errors import UnavailableError
from .gateway import Gateway, HttpError, Method
from .openapi import openapi_document
from .routes import ALIASES, Alias

log = logging.getLogger("shoal.rpc.http")
access_log = logging.getLogger("shoal.rpc.access")

CONSOLE_DIR = Path(__file__).with_name("console")
#: Idle keep-alive connections are closed after this (uvicorn's 5 s default made simple clients that
#: reuse one connection between bursts fail with a broken pipe; 75 s is nginx's default).
KEEP_ALIVE_S = 75


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(value, separators=(",", ":")).encode(), status, headers,
                    media_type="application/json")


def _error(error: HttpError, request_id: str) -> Response:
    headers = {"x-request-id": request_id}
    if error.error_class:
        headers["shoal-error"] = error.error_class
    if error.status == 401:
        headers["www-authenticate"] = "Bearer"
    return _json(error.body(), error.status, headers)


async def _no_route(request: Request, exc: HTTPException) -> Response:
    code = "NOT_FOUND" if exc.status_code == 404 else "UNIMPLEMENTED"
    error = HttpError(exc.status_code, code, None, f"no route {request.method} {request.url.path}; "
                      "see /openapi.json for the routes of this server")
    return _error(error, request.headers.get("x-request-id") or "-")


class HttpApp:
    """The Starlette application over a :class:`Gateway` (``max_body_bytes``: the request size limit).

    Calls run on ``executor`` (the gRPC server's worker pool, so one ``--threads`` bound covers
    both protocols), else on Starlette's thread pool.
    """

    def __init__(self, gateway: Gateway, *, max_body_bytes: int, draining: threading.Event, auth: bool,
                 executor: Executor | None = None) -> None:
        self.gateway = gateway
        self.executor = executor
        self.max_body_bytes = max_body_bytes
        self.draining = draining
        self.openapi = openapi_document(gateway, ALIASES, auth)
        self.app = Starlette(routes=self._routes(), exception_handlers={404: _no_route, 405: _no_route})

    def _routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/openapi.json", lambda request: _json(self.openapi), methods=["GET"]),
            Route("/", lambda request: RedirectResponse("/console/"), methods=["GET"]),
            Route("/console", lambda request: RedirectResponse("/console/"), methods=["GET"]),
            Mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console"),
        ]
        by_path: dict[str, dict[str, Alias]] = {}
        for alias in ALIASES:
            if self.gateway.find(alias.service, alias.method_name) is not None:
                by_path.setdefault(alias.path, {})[alias.verb] = alias
        for path, verbs in by_path.items():
            routes.append(Route(path, self._alias_endpoint(verbs), methods=list(verbs)))
        for method in self.gateway.methods.values():
            routes.append(Route(method.path, self._method_endpoint(method), methods=["POST"]))
        return routes

    async def health(self, request: Request) -> Response:
        if self.draining.is_set():
            return _json({"status": "NOT_SERVING"}, 503)
        return _json({"status": "SERVING"})

    def _method_endpoint(self, method: Method):
        async def endpoint(request: Request) -> Response:
            return await self.serve(request, method, {}, None)
        return endpoint

    def _alias_endpoint(self, verbs: dict[str, Alias]):
        async def endpoint(request: Request) -> Response:
            alias = verbs[request.method]
            method = self.gateway.find(alias.service, alias.method_name)
            fields = {**request.query_params, **request.path_params}
            return await self.serve(request, method, fields, alias.reshape)
        return endpoint

    async def _body(self, request: Request) -> bytes:
        """The request body, refused (413) past the limit, before reading it when the length is declared."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HttpError.too_large(declared, self.max_body_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HttpError.too_large(f"more than {self.max_body_bytes}", self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _run(self, call: functools.partial) -> Any:
        if self.executor is None:
            return await run_in_threadpool(call)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except RuntimeError:  # the gRPC server stopped first and shut its pool down
            raise HttpError.from_shoal(UnavailableError("server is shutting down; retry against another "
                                                        "instance or after restart")) from None

    async def serve(self, request: Request, method: Method, fields: dict[str, Any], reshape: Any) -> Response:
        start = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        client = request.client
        peer = f"ipv4:{client.host}:{client.port}" if client else "unknown"
        status = 200
        try:
            body = await self._body(request)
            metadata = list(request.headers.items())
            result = await self._run(functools.partial(self.gateway.call, method, body, metadata, peer, fields,
                                                       reshape))
            headers = {"x-request-id": request_id}
            if method.server_streaming:
                return StreamingResponse(iterate_in_threadpool(_ndjson(result)), headers=headers,
                                         media_type="application/x-ndjson")
            return _json(result, headers=headers)
        except HttpError as error:
            status = error.status
            return _error(error, request_id)
        finally:
            access_log.info("http request_id=%s method=%s path=%s status=%d latency_ms=%.2f peer=%s", request_id,
                            method.path, request.url.path, status, (time.perf_counter() - start) * 1e3, peer)


def _ndjson(messages: Iterator[Any]) -> Iterator[bytes]:
    for message in messages:
        yield json.dumps(message, separators=(",", ":")).encode() + b"\n"


class HttpServer:
    """uvicorn serving an :class:`HttpApp` on its own thread; ``port`` is the bound port."""

    def __init__(self, app: HttpApp, host: str, port: int, *, tls_cert_file: str | None = None,
                 tls_key_file: str | None = None, grace: float = 10.0) -> None:
        import uvicorn

        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self.socket = socket.create_server((host, port), family=family, reuse_port=False)
        except OSError as exc:
            raise UnavailableError(f"cannot bind HTTP {host}:{port}: {exc}") from None
        self.host, self.port = host, self.socket.getsockname()[1]
        config = uvicorn.Config(app.app, lifespan="off", access_log=False, log_level="warning",
                                ssl_certfile=tls_cert_file, ssl_keyfile=tls_key_file,
                                timeout_graceful_shutdown=grace, server_header=False,
                                timeout_keep_alive=KEEP_ALIVE_S)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="shoal-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise UnavailableError(f"the HTTP server on {host}:{self.port} did not start; see the log")
            time.sleep(0.01)
        log.info("HTTP/JSON API on %s://%s:%d (console at /console/)", "https" if tls_cert_file else "http",
                 host, self.port)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop accepting, let running requests finish, close the socket."""
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()
