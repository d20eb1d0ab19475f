"""The HTTP/JSON API and web console of ``shoal serve --http-port PORT`` (needs the ``http`` extra).

    server = build_server(db, port=50051, api_key=key)   # gRPC
    http = serve_http(server, port=8080)                 # the same servicers over HTTP/JSON
    ...
    http.stop(); server.stop()

``gateway`` runs a call the way gRPC does (auth, decoding, the servicer, errors),
``jsoncodec`` maps JSON onto the messages, ``routes`` lists the REST aliases, ``openapi``
describes it all, ``app`` is the Starlette/uvicorn server and ``console/`` the web console.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...engine.errors import FailedPreconditionError

if TYPE_CHECKING:
    from ..server import ShoalServer
    from .app import HttpServer


def serve_http(server: "ShoalServer", host: str = "127.0.0.1", port: int = 8080, *, max_body_bytes: int,
               tls_cert_file: str | None = None, tls_key_file: str | None = None, grace: float = 10.0
               ) -> "HttpServer":
    """Serve ``server``'s services over HTTP/JSON on ``host:port`` (0: a free port) in this process."""
    try:
        from .app import HttpApp, HttpServer
    except ImportError as exc:
        raise FailedPreconditionError(f"the HTTP API needs the 'http' extra (pip install 'shoal[http]'): {exc}") from None
    from .gateway import Gateway

    gateway = Gateway(server.servicers, server.guard)
    app = HttpApp(gateway, max_body_bytes=max_body_bytes, draining=server.state.draining,
                  auth=server.guard.api_key is not None, executor=server.executor)
    return HttpServer(app, host, port, tls_cert_file=tls_cert_file, tls_key_file=tls_key_file, grace=grace)
