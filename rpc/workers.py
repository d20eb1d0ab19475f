"""``shoal serve --workers N``: N processes answer on one port, one of them owns every write.

Why: a Python process runs Python on one core at a time (the GIL), and a served search spends
most of its time in Python around the kernel; one process cannot use a second core for that.

* The **owner** is the process ``shoal serve`` starts. It opens the database for writing (the
  directory lock), serves every method on the public port and, for the readers, on a Unix socket
  in a private directory (mode 0700). It starts the readers, restarts one that dies (kill -9
  included) and stops them before it stops itself.
* N-1 **readers** (``python -m shoal.rpc.workers``) open the same directory read-only
  (:class:`~shoal.engine.follower.FollowerDatabase`: memory-mapped segments, no lock) and bind the
  same port (SO_REUSEPORT: the kernel spreads new connections over the processes; a connection
  stays with its process). A reader answers :data:`LOCAL` methods itself and forwards every other
  one (writes, admin, RAG, methods it does not know) to the owner: the same request bytes and
  metadata (the owner checks the API key again), the owner's answer, status, details and
  ``shoal-error`` class back unchanged.

What a client sees: every durability promise is the owner's (a write is acknowledged once it is in
the owner's log per ``sync`` mode; a reader never writes). A read that starts after a write was
acknowledged sees it, whichever process serves the read: a reader catches up with the log and the
manifest before each read (``engine/follower.py``). If the owner is down, forwarded calls are
UNAVAILABLE and reads keep being answered from the files; readers exit when the owner does. The
HTTP gateway (``--http-port``) is served by the owner alone.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from .server import is_open_method
from .status import ERROR_TRAILER

log = logging.getLogger("shoal.rpc")

#: Methods a reader answers from its own copy (reads of records; the rest goes to the owner).
LOCAL = frozenset({"/shoal.v1.Search/Search", "/shoal.v1.Search/SearchRange", "/shoal.v1.Search/Recommend",
                   "/shoal.v1.Points/Get", "/shoal.v1.Points/Count", "/shoal.v1.Points/Scroll",
                   "/shoal.v1.Points/Exists", "/shoal.v1.Collections/List"})
#: Seconds between restarts of a reader that keeps dying (so a broken setup does not spin).
RESTART_DELAY = 1.0


# ------------------------------------------------------------------------------ forwarding (readers)
def _relay(context: grpc.ServicerContext, err: grpc.RpcError) -> None:
    """End this call with the owner's status, details and error class."""
    theirs = tuple((k, v) for k, v in (err.trailing_metadata() or ()) if k == ERROR_TRAILER)
    context.set_trailing_metadata((*(context.trailing_metadata() or ()), *theirs))
    context.abort(err.code(), err.details() or "")


def _metadata(context: grpc.ServicerContext) -> tuple[tuple[str, str], ...]:
    """The caller's metadata as the owner should see it (gRPC's own headers are the channel's), with this
    call's request id, so both processes log the same one."""
    given = tuple((k, v) for k, v in context.invocation_metadata() if not k.startswith(("grpc-", ":"))
                  and k not in ("user-agent", "x-request-id"))
    return given + tuple((k, v) for k, v in context.trailing_metadata() or () if k == "x-request-id")


def _timeout(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e8 else None


class Forwarder:
    """Handlers that pass a method's request bytes to the owner and its answer back."""

    def __init__(self, owner_address: str) -> None:
        self.channel = grpc.insecure_channel(owner_address)
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def handler(self, method: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
        found = self.handlers.get(method)
        if found is None:
            found = self.handlers[method] = self._build(method, client_streaming, server_streaming)
        return found

    def _build(self, method: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
        if server_streaming:
            call = (self.channel.stream_stream if client_streaming else self.channel.unary_stream)(method)

            def streamed(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
                try:
                    yield from call(request, metadata=_metadata(context), timeout=_timeout(context))
                except grpc.RpcError as err:
                    _relay(context, err)

            factory = grpc.stream_stream_rpc_method_handler if client_streaming else grpc.unary_stream_rpc_method_handler
            return factory(streamed)
        call = (self.channel.stream_unary if client_streaming else self.channel.unary_unary)(method)

        def unary(request: Any, context: grpc.ServicerContext) -> bytes:
            try:
                return call(request, metadata=_metadata(context), timeout=_timeout(context))
            except grpc.RpcError as err:
                _relay(context, err)
                raise  # not reached: abort raises

        factory = grpc.stream_unary_rpc_method_handler if client_streaming else grpc.unary_unary_rpc_method_handler
        return factory(unary)

    def replace(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        """``Registrar``'s ``forward`` hook: a forwarding handler for a registered method that is not LOCAL."""
        if method in LOCAL or is_open_method(method):
            return None
        return self.handler(method, handler.request_streaming, handler.response_streaming)


class ForwardUnknown(grpc.GenericRpcHandler):
    """Last generic handler of a reader: methods it has no servicer for (the RAG ``Query`` service of an
    owner started with ``--rag``) go to the owner when the protocol knows them."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        try:
            desc = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", "."))
        except KeyError:
            return None  # UNIMPLEMENTED here, as on the owner
        return self.forwarder.handler(method, desc.client_streaming, desc.server_streaming)


# ------------------------------------------------------------------------------ the owner's pool
def owner_socket() -> tuple[Path, str]:
    """A fresh private directory and the gRPC address of the owner's Unix socket inside it."""
    directory = Path(tempfile.mkdtemp(prefix="shoal-owner-"))  # mode 0700: only this user connects
    return directory, f"unix:{directory / 'owner.sock'}"


class ReaderPool:
    """The N-1 reader processes of the owner: started, restarted when one exits, stopped."""

    def __init__(self, count: int, argv: list[str], env: dict[str, str]) -> None:
        self.count, self.argv, self.env = count, argv, env
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.restarts = 0
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="shoal-readers", daemon=True)

    def _spawn(self, slot: int) -> None:
        # stdin is a pipe the reader watches: when this process dies (even kill -9) it reads EOF and exits.
        self.procs[slot] = subprocess.Popen([sys.executable, "-m", "shoal.rpc.workers", *self.argv],
                                            stdin=subprocess.PIPE, env=self.env)

    def start(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)
        self._watcher.start()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            for slot, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                    log.warning("reader process %d exited with %s; starting another", proc.pid, proc.returncode)
                    self.restarts += 1
                    time.sleep(RESTART_DELAY if self.restarts > self.count else 0)
                    if not self._stopping.is_set():
                        self._spawn(slot)

    def stop(self, grace: float) -> None:
        """SIGTERM every reader (they drain like a server does), then SIGKILL what is left after ``grace``."""
        self._stopping.set()
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + grace + 5
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def reader_argv(args: argparse.Namespace, port: int, owner: str) -> list[str]:
    """The command line of a reader for ``shoal serve`` arguments ``args`` (the API key goes in the
    environment, never on a command line)."""
    argv = ["--data", args.data, "--host", args.host, "--port", str(port), "--owner", owner,
            "--max-message-mb", str(args.max_message_mb), "--grace", str(args.grace)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.tls_cert:
        argv += ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key]
    return argv


# ------------------------------------------------------------------------------ a reader process
def _reader_main(argv: list[str] | None = None) -> int:
    from ..engine.follower import FollowerDatabase
    from .cli import API_KEY_ENV
    from .server import build_server
    from .v1 import query_pb2  # noqa: F401  (the Query service's descriptors, so its calls are forwarded)

    p = argparse.ArgumentParser(prog="python -m shoal.rpc.workers", description="a reader of shoal serve --workers")
    p.add_argument("--data", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--owner", required=True, help="gRPC address of the owner's private socket")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-message-mb", type=float, default=64.0)
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"reader {os.getpid()}: %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())

    def owner_gone() -> None:
        sys.stdin.buffer.read()  # EOF: the owner exited, however it died
        stop.set()

    threading.Thread(target=owner_gone, daemon=True).start()
    forwarder = Forwarder(args.owner)
    cert = Path(args.tls_cert).read_bytes() if args.tls_cert else None
    key = Path(args.tls_key).read_bytes() if args.tls_key else None
    server = build_server(FollowerDatabase(args.data), args.host, args.port, api_key=os.environ.get(API_KEY_ENV) or None,
                          tls_cert=cert, tls_key=key, workers=args.threads,
                          max_message_bytes=int(args.max_message_mb * 1024 * 1024), forward=forwarder.replace,
                          reuse_port=True, extra_handlers=[ForwardUnknown(forwarder)])
    log.info("reader %d serving on %s:%d", os.getpid(), args.host, server.port)
    stop.wait()
    server.stop(args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(_reader_main())
