"""``shoal serve``: run the shoal.v1 gRPC server until SIGTERM/SIGINT, then drain and close."""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..engine.validation import DEFAULT_MAX_K, MAX_K_ENV

log = logging.getLogger("shoal.rpc")
LISTENING = "listening on"
#: Environment variable holding the API key (kept out of the command line, which any local user can read).
API_KEY_ENV = "SHOAL_API_KEY"


def spawn(args: list[str], *, stderr: IO[Any] | int | None = None, timeout: float = 60.0
          ) -> tuple[subprocess.Popen, int]:
    """Start ``python -m shoal serve ARGS`` (add ``--port 0`` for a free port) and return it with its bound port.

    Used by the tests and the benchmark; the port is read from the line ``serve`` prints.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shoal", "serve", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.match(rf"{LISTENING} \S+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"shoal serve did not start (exit code {proc.wait()})")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve a database over gRPC (shoal.v1)",
                              description="Serve a Shoal database over gRPC. Prints 'listening on HOST:PORT' once bound.")
    p.add_argument("--data", help="data directory (durable); omitted: in memory")
    p.add_argument("--ray", metavar="ADDRESS", help="serve a Ray cluster's sharded collections (shoal.cluster): "
                   "'auto', 'ray://host:port', or 'local' to start one here; --data is the replicas' root")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port (printed)")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key-file", help="require the API key held in this file (surrounding whitespace ignored); clients send "
                     "'authorization: Bearer KEY' or 'x-api-key: KEY'")
    key.add_argument("--api-key", help=f"require this API key. Prefer --api-key-file or ${API_KEY_ENV}: a key on "
                     "the command line is visible to every local user in /proc/<pid>/cmdline and ps")
    p.add_argument("--snapshot-dir", help="directory Admin.Snapshot writes into; requests name a snapshot, never a "
                   "path (default: DATA/snapshots; an in-memory server without it refuses snapshots)")
    p.add_argument("--max-k", type=int, default=None,
                   help=f"largest k a search may ask for (default: ${MAX_K_ENV} or {DEFAULT_MAX_K})")
    p.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key (with --tls-cert)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes answering on the port (needs --data): one owns the writes, the others serve "
                   "reads from the same files and forward the rest to it (see shoal.rpc.workers); default 1")
    p.add_argument("--threads", type=int, default=None,
                   help="thread pool size of each process (default: 4 per core, at most 64)")
    p.add_argument("--access-log", action="store_true",
                   help="log one line per call (request id, method, status, latency, peer); off by default: "
                   "it cost 45-100 µs of a ~450 µs request in issue 27's measurements")
    p.add_argument("--max-message-mb", type=float, default=64.0, help="largest request/response in MiB")
    p.add_argument("--http-port", type=int, default=None,
                   help="also serve the HTTP/JSON API, /openapi.json and the web console (/console/) on this port, "
                   "same host, auth, TLS and size limit (0 picks a free port, printed as 'http listening on "
                   "HOST:PORT'); needs the 'http' extra")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to let running calls finish on shutdown")
    from ..rag.cli import add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(func=run)


def read_api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file, else --api-key, else $SHOAL_API_KEY; None: no authentication."""
    from ..engine.errors import InvalidArgumentError

    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"cannot read the API key file {args.api_key_file}: {exc}") from None
        if not key:
            raise InvalidArgumentError(f"API key file {args.api_key_file} is empty")
        return key
    return args.api_key or os.environ.get(API_KEY_ENV) or None


def open_ray_database(address: str, root: str | None) -> Any:
    """``--ray ADDRESS``: the cluster's collections behind the same gRPC service."""
    from ..cluster import RayDatabase
    from ..engine.errors import InvalidArgumentError

    if not root:
        raise InvalidArgumentError("--ray needs --data ROOT: the directory each shard replica keeps its data under")
    return RayDatabase(root, address=None if address == "local" else address)


def run(args: argparse.Namespace) -> int:
    from ..engine.database import Database
    from ..engine.errors import InvalidArgumentError
    from .server import build_server

    api_key = read_api_key(args)
    if args.max_k is not None:
        if args.max_k <= 0:
            raise InvalidArgumentError(f"--max-k must be a positive integer, got {args.max_k}")
        os.environ[MAX_K_ENV] = str(args.max_k)  # engine.validation.check_k reads it on every search
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidArgumentError("--tls-cert and --tls-key must be given together")
    cert = Path(args.tls_cert).read_bytes() if args.tls_cert else None
    tls_key = Path(args.tls_key).read_bytes() if args.tls_key else None

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    if args.workers < 1 or (args.workers > 1 and (not args.data or args.ray)):
        raise InvalidArgumentError(f"--workers must be 1, or more with --data (processes share the data directory; "
                                   f"not with --ray), got {args.workers}")
    logging.getLogger("shoal.rpc.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    if args.ray:
        db = open_ray_database(args.ray, args.data)
    else:
        db = Database(args.data) if args.data else Database()
    from .query_service import enable_from_args

    enable_from_args(args)
    owner_dir, owner_address = (None, None)
    if args.workers > 1:
        from .workers import owner_socket

        owner_dir, owner_address = owner_socket()
    server = build_server(db, args.host, args.port, api_key=api_key, tls_cert=cert, tls_key=tls_key,
                          workers=args.threads, max_message_bytes=int(args.max_message_mb * 1024 * 1024),
                          snapshot_dir=args.snapshot_dir, reuse_port=args.workers > 1, also_listen=owner_address)
    readers = None
    if owner_address is not None:
        from .workers import ReaderPool, reader_argv

        env = {**os.environ, **({API_KEY_ENV: api_key} if api_key else {})}
        readers = ReaderPool(args.workers - 1, reader_argv(args, server.port, owner_address), env)
        readers.start()
    http = None
    if args.http_port is not None:
        from .http import serve_http

        http = serve_http(server, args.host, args.http_port, max_body_bytes=int(args.max_message_mb * 1024 * 1024),
                          tls_cert_file=args.tls_cert, tls_key_file=args.tls_key, grace=args.grace)
    print(f"{LISTENING} {args.host}:{server.port}", flush=True)
    if http is not None:
        print(f"http {LISTENING} {args.host}:{http.port}", flush=True)
    while not stop.wait(0.5):
        pass
    log.info("shutdown requested: draining running calls (up to %.1f s)", args.grace)
    server.state.draining.set()  # HTTP refuses new calls too while both drain
    if readers is not None:
        readers.stop(args.grace)  # they forward writes here: stop them first
    if http is not None:
        http.stop(args.grace + 5)
    server.stop(args.grace)
    if owner_dir is not None:
        shutil.rmtree(owner_dir, ignore_errors=True)
    log.info("stopped; database closed")
    print("stopped", file=sys.stderr, flush=True)
    return 0
