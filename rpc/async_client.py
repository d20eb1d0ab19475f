"""``shoal.AsyncClient``: the ``shoal.Client`` API as coroutines over ``grpc.aio``.

    async with shoal.AsyncClient("localhost:50051") as db:
        docs = await db.get_collection("docs")
        hits = await docs.search(query, k=10)
        async for record in docs.iter(batch_size=500):
            ...

Each method is the same request/response generator as the blocking client's (``rpc/client.py``,
``@remote``), driven here with awaits, so arguments, validation, results, errors and retries
(UNAVAILABLE, idempotent calls, exponential backoff) are the same.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
import grpc.aio

from .client import (DEFAULT_MAX_MESSAGE_BYTES, ClientBase, RemoteCollectionBase, Rpc, Steps, channel_options)
from .status import error_from_rpc


def _coroutine(method: Callable[..., Any]) -> Callable[..., Any]:
    """The coroutine twin of a ``@remote`` method (same docstring and signature)."""
    steps = method.steps  # type: ignore[attr-defined]

    @functools.wraps(method)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._client._drive_async(steps(self, *args, **kwargs))

    return run


def _async_twins(base: type) -> dict[str, Any]:
    return {name: _coroutine(attr) for klass in reversed(base.__mro__) for name, attr in vars(klass).items()
            if hasattr(attr, "steps")}


class AsyncRemoteCollection(RemoteCollectionBase):
    """A collection of a ``shoal.AsyncClient``: every ``RemoteCollection`` method as a coroutine;
    ``iter`` is an async iterator."""

    async def iter(self, batch_size: int = 256, filter: Any = None,  # type: ignore[override]
                   include: Iterable[str] = ("metadata",)) -> AsyncIterator[Any]:
        """Every record matching ``filter``, in id order, ``batch_size`` per call (``scroll``)."""
        cursor = None
        while True:
            page = await self.scroll(filter, batch_size, cursor, include)
            for record in page.records:
                yield record
            cursor = page.next_cursor
            if cursor is None:
                return


for _name, _method in _async_twins(RemoteCollectionBase).items():
    setattr(AsyncRemoteCollection, _name, _method)


class AsyncClient(ClientBase):
    """A ``grpc.aio`` connection to a Shoal server with the Database API as coroutines
    (same constructor arguments as ``shoal.Client``)."""

    collection_class = AsyncRemoteCollection

    def __init__(self, target: str = "localhost:50051", *, api_key: str | None = None, timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.05, tls: bool = False, root_certificates: bytes | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, batch_size: int = 4096) -> None:
        """Connect to ``target`` ("host:port"); see ``shoal.Client`` for the options."""
        options = channel_options(max_message_bytes)
        if tls or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            channel = grpc.aio.insecure_channel(target, options=options)
        self._setup(channel, target, api_key, timeout, retries, backoff, batch_size)

    async def _run(self, call: Rpc) -> Any:
        attempt = 0
        while True:
            try:
                return await self._invoke(call)
            except grpc.RpcError as err:
                delay = self._retry_delay(err, call, attempt)
                if delay is None:
                    raise error_from_rpc(err) from None
                await asyncio.sleep(delay)
                attempt += 1

    async def _drive_async(self, steps: Steps) -> Any:
        try:
            call = next(steps)
            while True:
                call = steps.send(await self._run(call))
        except StopIteration as done:
            return done.value

    async def close(self) -> None:
        """Close the channel; calls afterwards fail."""
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


for _name, _method in _async_twins(ClientBase).items():
    setattr(AsyncClient, _name, _method)
