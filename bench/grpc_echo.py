"""A bare grpcio server that answers every call with fixed bytes: the floor under any grpcio Python server.

``python -m shoal.bench.served_overhead --echo`` runs it beside ``shoal serve`` and measures its CPU per
call with the same clients, so "what a served Shoal request costs" and "what grpcio's Python server costs
doing nothing" come from one run (issue 27). Variants that might lower the floor are flags here:

* ``--executor``: ``callpool`` (Shoal's ``rpc.call_pool.CallPool``, what ``shoal serve`` uses) or
  ``threadpool`` (``concurrent.futures.ThreadPoolExecutor``). Running the call on grpcio's polling thread
  itself (an executor whose ``submit`` calls at once) deadlocks: the pool thread waits on a condition for
  the request message, which only the polling thread delivers (``grpc._server._unary_request``), so every
  sync call costs two hand-offs between threads at least;
* ``--threads``: pool size; ``--max-concurrent``: grpcio's ``maximum_concurrent_rpcs``;
* ``--aio``: the ``grpc.aio`` server (one asyncio loop) instead of the sync one;
* ``--generic``: a generic handler looked up per call instead of grpcio's registered-method fast path.

Run: ``python -m shoal.bench.grpc_echo --port 0 [flags]``; it prints ``listening on HOST:PORT``.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time
from concurrent import futures
from typing import Any

import grpc

SERVICE, METHOD = "shoal.bench.Echo", "Call"
PATH = f"/{SERVICE}/{METHOD}"


def _executor(kind: str, threads: int) -> futures.Executor:
    if kind == "threadpool":
        return futures.ThreadPoolExecutor(threads)
    from ..rpc.call_pool import CallPool

    return CallPool(threads)


def _handler(response: bytes, work_us: float) -> grpc.RpcMethodHandler:
    def call(request: bytes, context: Any) -> bytes:
        if work_us:  # CPU held with the GIL, like a search: is the floor additive around real work?
            end = time.thread_time() + work_us * 1e-6
            while time.thread_time() < end:
                pass
        return response

    return grpc.unary_unary_rpc_method_handler(call)


def serve_sync(args: argparse.Namespace) -> None:
    server = grpc.server(_executor(args.executor, args.threads), maximum_concurrent_rpcs=args.max_concurrent or None)
    handler = _handler(b"\0" * args.response_bytes, args.work_us)
    if args.generic:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    else:
        server.add_registered_method_handlers(SERVICE, {METHOD: handler})
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    print(f"listening on {args.host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


async def serve_aio(args: argparse.Namespace) -> None:
    server = grpc.aio.server(maximum_concurrent_rpcs=args.max_concurrent or None)
    response = b"\0" * args.response_bytes

    async def call(request: bytes, context: Any) -> bytes:
        return response

    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(call)}),))
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    await server.start()
    print(f"listening on {args.host}:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--executor", choices=("callpool", "threadpool"), default="callpool")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--max-concurrent", type=int, default=0, help="grpcio's maximum_concurrent_rpcs (0: unlimited)")
    p.add_argument("--aio", action="store_true", help="grpc.aio server instead of the sync one")
    p.add_argument("--generic", action="store_true", help="generic handler instead of the registered-method path")
    p.add_argument("--work-us", type=float, default=0.0, help="CPU each call spends in the handler (sync server)")
    p.add_argument("--response-bytes", type=int, default=150, help="size of every answer (a k=10 search: ~150)")
    args = p.parse_args(argv)
    if args.aio:
        asyncio.run(serve_aio(args))
    else:
        serve_sync(args)


if __name__ == "__main__":
    main()
