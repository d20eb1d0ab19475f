"""The ``shoal.v1`` gRPC server over a ``shoal.Database``.

Layout (how to add a service)
-----------------------------
* ``rpc/v1/<area>.proto`` holds an area's messages, ``rpc/v1/service.proto`` the
  services; stubs are committed and regenerated with ``python -m shoal.rpc.codegen``
  (``tests/rpc/test_codegen.py`` fails when they are stale).
* A service is one ``ServiceSpec`` in ``SERVICES``: its full name, the generated
  ``add_*Servicer_to_server`` function and a factory ``(ServerState) -> servicer``.
  Adding one (e.g. the query service ``Ask``/``Embed``) is a new .proto plus one
  entry in ``SERVICES`` (or ``register_service`` before ``build_server``); health,
  reflection, auth, logging and error mapping then apply to it automatically.
* Servicer methods are wrapped by ``handle_errors``: a ShoalError becomes its
  ``grpc_code`` status (``rpc/status.py``), anything else INTERNAL.
* Requests reach the servicers already parsed, but by our code (``rpc/pipeline.py``,
  ``rpc/decode.py``), not grpcio's: bytes that do not decode are INVALID_ARGUMENT
  saying why, where grpcio would answer INTERNAL.

Request path (``rpc/pipeline.py``): every method handler is wrapped once at registration
(no grpc interceptors); per call it checks shutdown and the API key in constant time
(health and reflection stay open so probes and tools work), parses the request, echoes
``x-request-id`` and, when ``shoal.rpc.access`` logs INFO, writes one access-log line.

Concurrency: the thread pool runs calls in parallel; a Collection's RW lock lets
searches share it and serializes writes. ``shoal serve --workers N`` runs N processes
on one port (``rpc/workers.py``).

Snapshots (``Admin.Snapshot``) are written only inside the server's snapshot directory
and the request names one (``SNAPSHOT_NAME``), never a path: a path let any client write
wherever the server user could (issue 15).

Reflection is served as ``grpc.reflection.v1`` and ``v1alpha``; grpcio-reflection 1.85
ships v1alpha only, and the two protocols are the same messages on the wire, so one
servicer answers both.
"""
from __future__ import annotations

import functools
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from ..engine.database import Database
from ..engine.echo import shorten
from ..engine.errors import (AlreadyExistsError, AuthenticationError, FailedPreconditionError, InvalidArgumentError,
                             ShoalError, UnavailableError, UnimplementedError)
from ..index.options import check_option_names
from ..storage.io_errors import storage_errors
from ..engine.results import QueryResult
from . import convert
from .service_extras import CollectionsExtras, PointsExtras, SearchExtras
from .payload_index_service import PayloadIndexMethods
from .call_pool import CallPool
from .pipeline import Forward, Registrar
from .status import handle_errors
from .hybrid import hybrid_from_proto
from .v1 import admin_pb2, collections_pb2, points_pb2, search_pb2, service_pb2_grpc, types_pb2
from .v1 import service_pb2  # noqa: F401  (registers the service descriptors that reflection serves)

log = logging.getLogger("shoal.rpc")

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
OPEN_SERVICES = (health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
#: A snapshot name: one path component of letters, digits, '_', '-', '.', not starting with '.'
#: (so never '..' or a hidden file), at most 128 characters.
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
#: The snapshot directory of a durable server without ``snapshot_dir``, inside its data directory.
DEFAULT_SNAPSHOT_SUBDIR = "snapshots"


@dataclass
class ServerState:
    """What servicers share: the database, where snapshots go (None: nowhere) and the shutdown flag."""

    db: Database
    snapshot_dir: Path | None = None
    draining: threading.Event = field(default_factory=threading.Event)


def api_key_of(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The key a call presents: ``x-api-key``, else ``authorization: Bearer <key>`` (scheme
    case-insensitive, RFC 6750 section 2.1); None when it presents none."""
    meta = dict(metadata or ())
    if "x-api-key" in meta:
        return meta["x-api-key"]
    scheme, _, token = str(meta.get("authorization", "")).strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _optional_filter(msg: Any) -> dict[str, Any] | None:
    return convert.filter_from_proto(msg.filter) if msg.HasField("filter") else None


class CollectionsServicer(CollectionsExtras, PayloadIndexMethods, service_pb2_grpc.CollectionsServicer):
    def __init__(self, state: ServerState) -> None:
        self.db = state.db

    @staticmethod
    def info(col: Any) -> collections_pb2.CollectionInfo:
        d = col.describe()
        return collections_pb2.CollectionInfo(
            name=d["name"], dim=d["dim"], metric=d["metric"], index=d["index"],
            index_options=convert.metadata_to_proto(d["index_options"]), count=d["count"],
            segments=d["segments"], backend=d["backend"], metadata=convert.metadata_to_proto(d.get("metadata")),
            payload_indexes=convert.metadata_to_proto(d.get("payload_indexes")))

    @handle_errors
    def Create(self, request, context):
        options = convert.metadata_from_proto(request.index_options)
        check_option_names(options)  # a clash would be a TypeError in the call below
        if request.HasField("metadata"):
            options["metadata"] = convert.metadata_from_proto(request.metadata)
        col = self.db.create_collection(request.name, request.dim, request.metric or "cosine",
                                        request.index or "flat", **options)
        return self.info(col)

    @handle_errors
    def Get(self, request, context):
        return self.info(self.db.get_collection(request.name))

    @handle_errors
    def List(self, request, context):
        return collections_pb2.ListCollectionsResponse(names=self.db.list_collections())

    @handle_errors
    def Drop(self, request, context):
        self.db.drop_collection(request.name)
        return collections_pb2.DropCollectionResponse()


class PointsServicer(PointsExtras, service_pb2_grpc.PointsServicer):
    def __init__(self, state: ServerState) -> None:
        self.db = state.db

    def _upsert(self, request: points_pb2.UpsertRequest) -> int:
        col = self.db.get_collection(request.collection)
        ids = convert.upsert_ids_from_proto(request)
        vectors = convert.vectors_from_proto(request.vectors)
        return col.upsert(ids, vectors, convert.upsert_payloads_from_proto(request))

    @handle_errors
    def Upsert(self, request, context):
        return points_pb2.UpsertResponse(upserted=self._upsert(request))

    @handle_errors
    def UpsertStream(self, request_iterator, context):
        """Each message is one atomic upsert, applied in order (the client validates the whole load first)."""
        total = 0
        for i, request in enumerate(request_iterator):
            try:
                total += self._upsert(request)
            except ShoalError as exc:
                raise type(exc)(f"stream message {i}: {exc} ({total} points of earlier messages were applied)") from None
        return points_pb2.UpsertResponse(upserted=total)

    @handle_errors
    def Get(self, request, context):
        col = self.db.get_collection(request.collection)
        include = [name for name, flag in (("metadata", "include_metadata"), ("vector", "include_vectors"))
                   if not request.HasField(flag) or getattr(request, flag)]
        res = col.get(None if request.select else convert.ids_from_proto(request.ids),
                      filter=_optional_filter(request), limit=request.limit if request.HasField("limit") else None,
                      offset=request.offset, include=include, missing="skip" if request.skip_missing else "raise")
        response = points_pb2.GetPointsResponse()
        convert.get_result_to_proto(res, col.dim, response)
        return response

    @handle_errors
    def Delete(self, request, context):
        col = self.db.get_collection(request.collection)
        ids = convert.ids_from_proto(request.ids) if request.by_ids else None
        return points_pb2.DeletePointsResponse(deleted=col.delete(ids, _optional_filter(request)))

    @handle_errors
    def Count(self, request, context):
        col = self.db.get_collection(request.collection)
        return points_pb2.CountResponse(count=col.count(_optional_filter(request)))


class SearchServicer(SearchExtras, service_pb2_grpc.SearchServicer):
    def __init__(self, state: ServerState) -> None:
        self.db = state.db

    @handle_errors
    def Search(self, request, context):
        col = self.db.get_collection(request.collection)
        include = ("distance",) + (("metadata",) if request.include_metadata else ()) \
            + (("vector",) if request.include_vectors else ())
        batches = [(None if b.hybrid and not b.HasField("vectors") else
                    convert.vectors_from_proto(b.vectors, f"batches[{i}].vectors"), b.k, _optional_filter(b),
                    convert.params_from_proto(b.params), {**self.search_options(b), **(hybrid_from_proto(b) if b.hybrid else {})})
                   for i, b in enumerate(request.batches)]
        response = search_pb2.SearchResponse()
        for q, k, flt, params, options in batches:
            results = col.search(q, k, flt, params, include, explain=request.explain, **options)
            # a multi-vector collection reads a batch without counts as one query set: one result
            for res in [results] if isinstance(results, QueryResult) else results:
                if options.get("group_by"):
                    convert.groups_to_proto(res, response.grouped.add())
                else:
                    convert.query_result_to_proto(res, response.results.add(), request.packed_int_ids)
        return response


def _to_metadata(value: Any) -> types_pb2.Metadata:
    """An admin method's return value as a Metadata message (non-dicts under "result")."""
    if value is None:
        return types_pb2.Metadata()
    if not isinstance(value, dict):
        value = {"result": value if isinstance(value, (bool, int, float, str)) else str(value)}
    return convert.metadata_to_proto(value)


class AdminServicer(service_pb2_grpc.AdminServicer):
    """Flush / compact / snapshot call the Database or Collection method of that name.

    For the whole database, a flush / compact the Database lacks is applied to each
    collection (results keyed by collection name); a method that is missing is UNIMPLEMENTED.
    """

    def __init__(self, state: ServerState) -> None:
        self.db = state.db
        self.snapshot_dir = state.snapshot_dir

    def _call(self, request: admin_pb2.AdminRequest, name: str, *args: Any,
              per_collection: bool = True) -> admin_pb2.AdminResponse:
        if request.collection:
            targets = {"": self.db.get_collection(request.collection)}
        elif getattr(self.db, name, None) is not None or not per_collection:
            targets = {"": self.db}
        else:
            targets = {n: self.db.get_collection(n) for n in self.db.list_collections()}
        missing = [type(t).__name__ for t in targets.values() if getattr(t, name, None) is None]
        if missing:
            raise UnimplementedError(f"{name} is not supported by this server's {missing[0]} "
                                     f"(its storage layer has no {name}())")
        results = {n: getattr(t, name)(*args) for n, t in targets.items()}
        return admin_pb2.AdminResponse(result=_to_metadata(results[""] if "" in results else results))

    @handle_errors
    def Flush(self, request, context):
        return self._call(request, "flush")

    @handle_errors
    def Compact(self, request, context):
        return self._call(request, "compact")

    @handle_errors
    def Snapshot(self, request, context):
        dest = self._snapshot_target(request.path)
        with storage_errors(dest, "write the snapshot"):
            self._call(request, "snapshot", dest, per_collection=False)  # one consistent copy
        return admin_pb2.AdminResponse(result=_to_metadata({"snapshot": request.path}))

    def _snapshot_target(self, name: str) -> Path:
        """``<snapshot dir>/<name>`` for a valid, unused name; the request never names a path."""
        if self.snapshot_dir is None:
            raise FailedPreconditionError("this server has no snapshot directory; start it with --snapshot-dir DIR "
                                          "(a durable server defaults to DATA/snapshots)")
        if not SNAPSHOT_NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"snapshot name must be 1-128 letters, digits, '_', '-' or '.', not starting with '.', got "
                f"{shorten(name)}; it names a new directory inside the server's snapshot directory, not a path")
        dest = self.snapshot_dir / name
        if os.path.lexists(dest):
            raise AlreadyExistsError(f"snapshot {name!r} already exists; choose a new name")
        with storage_errors(self.snapshot_dir, "create the snapshot directory"):
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        return dest

    @handle_errors
    def Stats(self, request, context):
        target = self.db.get_collection(request.collection) if request.collection else self.db
        if getattr(target, "stats", None) is not None:
            return admin_pb2.AdminResponse(result=_to_metadata(target.stats()))
        if request.collection:
            return admin_pb2.AdminResponse(result=_to_metadata(target.describe()))
        stats = {"path": self.db.path, "collections": {n: self.db.get_collection(n).describe()
                                                       for n in self.db.list_collections()}}
        return admin_pb2.AdminResponse(result=_to_metadata(stats))


@dataclass(frozen=True)
class ServiceSpec:
    """One gRPC service of the server: full name, generated registration function, servicer factory."""

    name: str
    add_to_server: Callable[[Any, grpc.Server], None]
    factory: Callable[[ServerState], Any]


SERVICES: list[ServiceSpec] = [
    ServiceSpec("shoal.v1.Collections", service_pb2_grpc.add_CollectionsServicer_to_server, CollectionsServicer),
    ServiceSpec("shoal.v1.Points", service_pb2_grpc.add_PointsServicer_to_server, PointsServicer),
    ServiceSpec("shoal.v1.Search", service_pb2_grpc.add_SearchServicer_to_server, SearchServicer),
    ServiceSpec("shoal.v1.Admin", service_pb2_grpc.add_AdminServicer_to_server, AdminServicer),
]


def register_service(spec: ServiceSpec) -> None:
    """Add a service to every server built afterwards (idempotent by name)."""
    if all(s.name != spec.name for s in SERVICES):
        SERVICES.append(spec)


# ------------------------------------------------------------------- guard

def is_open_method(method: str) -> bool:
    """Health and reflection: served without the key and during shutdown (probes and tools keep working)."""
    return any(method.startswith(f"/{name}/") for name in OPEN_SERVICES)


class GuardInterceptor:
    """Refuses calls during shutdown (UNAVAILABLE) and without the API key (UNAUTHENTICATED).

    The request pipeline (``rpc/pipeline.py``) asks it once per gRPC call, the HTTP gateway
    (``rpc/http``) once per HTTP request; no longer a grpc interceptor (issue 27), the name stays.
    """

    def __init__(self, state: ServerState, api_key: str | None) -> None:
        self.state = state
        self.api_key = api_key.encode() if api_key else None

    def refusal(self, details: Any) -> ShoalError | None:
        """Why a call to ``details.method`` with ``details.invocation_metadata`` is refused (None: it is not)."""
        if self.api_key is None and not self.state.draining.is_set():
            return None  # the common case, decided without looking at the method
        if self.state.draining.is_set() and not is_open_method(details.method):
            return UnavailableError("server is shutting down; retry against another instance or after restart")
        if self.api_key is None or is_open_method(details.method):
            return None
        given = api_key_of(details.invocation_metadata)
        if given is None:
            return AuthenticationError("missing API key: send metadata 'authorization: Bearer <key>' or 'x-api-key'")
        if not hmac.compare_digest(given.encode(), self.api_key):
            return AuthenticationError("wrong API key")
        return None


@functools.lru_cache(maxsize=None)
def request_class(method: str) -> Any:
    """The request message class of ``/package.Service/Method``, or None for a method not in the pool."""
    try:
        found = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", "."))
    except KeyError:
        return None
    return message_factory.GetMessageClass(found.input_type)


# ------------------------------------------------------------------- server

class ShoalServer:
    """A started gRPC server; ``port`` is the bound port (useful with port 0).

    ``servicers`` (service name -> servicer), ``guard`` and ``executor`` (the worker pool) are
    what the HTTP gateway (``rpc/http``) uses too, so both protocols share one implementation,
    one auth check and one bounded set of worker threads.
    """

    def __init__(self, server: grpc.Server, port: int, state: ServerState,
                 health_servicer: health.HealthServicer, servicers: dict[str, Any] | None = None,
                 guard: GuardInterceptor | None = None, executor: futures.Executor | None = None) -> None:
        self.server = server
        self.port = port
        self.state = state
        self.health = health_servicer
        self.servicers = servicers or {}
        self.guard = guard or GuardInterceptor(state, None)
        self.executor = executor

    def stop(self, grace: float = 10.0, close_db: bool = True) -> None:
        """Refuse new calls, let running ones finish (up to ``grace`` s), then close the database."""
        self.state.draining.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.executor is not None:
            self.executor.shutdown(wait=False)
        if close_db:
            self.state.db.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def _enable_reflection(service_names: list[str], server: Registrar) -> None:
    """Serve reflection as v1alpha and v1 from one servicer (same messages on the wire)."""
    servicer = reflection.ReflectionServicer([*service_names, reflection.SERVICE_NAME, REFLECTION_V1])
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method})
                                     for name in (reflection.SERVICE_NAME, REFLECTION_V1)])


def default_workers() -> int:
    return min(64, 4 * (os.cpu_count() or 1))


def build_server(db: Database, host: str = "127.0.0.1", port: int = 50051, *, api_key: str | None = None,
                 tls_cert: bytes | None = None, tls_key: bytes | None = None, workers: int | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, snapshot_dir: str | os.PathLike | None = None,
                 services: Iterable[ServiceSpec] | None = None, forward: Forward | None = None,
                 reuse_port: bool = False, also_listen: str | None = None,
                 extra_handlers: Sequence[grpc.GenericRpcHandler] = ()) -> ShoalServer:
    """Build, bind and start a server for ``db`` (``port=0`` picks a free port).

    The last four are for the processes of ``shoal serve --workers`` (``rpc/workers.py``): methods
    served by another process, a port several processes bind (SO_REUSEPORT), a second (plaintext,
    Unix socket) address, and generic handlers asked after the services'.

    Snapshots go under ``snapshot_dir``, by default ``<data>/snapshots`` for a durable ``db``;
    an in-memory ``db`` without one refuses them.
    """
    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgumentError("TLS needs both a certificate and a key")
    if snapshot_dir is None and db.path is not None:
        snapshot_dir = Path(db.path) / DEFAULT_SNAPSHOT_SUBDIR
    state = ServerState(db, None if snapshot_dir is None else Path(snapshot_dir).resolve())
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", int(reuse_port))]
    guard = GuardInterceptor(state, api_key)
    executor = CallPool(workers or default_workers())
    server = grpc.server(executor, options=options)
    registrar = Registrar(server, guard.refusal, request_class, forward)  # handlers wrapped once, here
    specs = list(SERVICES if services is None else services)
    servicers = {spec.name: spec.factory(state) for spec in specs}
    for spec in specs:
        spec.add_to_server(servicers[spec.name], registrar)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    for spec in specs:
        health_servicer.set(spec.name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    _enable_reflection([*(s.name for s in specs), health.SERVICE_NAME], registrar)
    if extra_handlers:
        registrar.add_generic_rpc_handlers(extra_handlers)
    address = f"{host}:{port}"
    if tls_cert is not None:
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls_key, tls_cert)]))
    else:
        bound = server.add_insecure_port(address)
    if not bound or (also_listen is not None and not server.add_insecure_port(also_listen)):
        raise UnavailableError(f"cannot bind {address if not bound else also_listen}")
    server.start()
    log.info("shoal.v1 serving on %s:%d (%s, auth %s, services: %s)", host, bound,
             "TLS" if tls_cert else "plaintext", "on" if api_key else "off", ", ".join(s.name for s in specs))
    return ShoalServer(server, bound, state, health_servicer, servicers, guard, executor)
