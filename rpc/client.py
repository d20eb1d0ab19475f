"""Client SDK: ``shoal.Client`` mirrors ``shoal.Database`` / ``Collection`` over gRPC.

    db = shoal.Client("localhost:50051", api_key="...")   # instead of shoal.Database(...)
    docs = db.create_collection("docs", dim=384)
    docs.upsert(ids, vectors, metadata)
    docs.search(queries, k=10, filter={"lang": "en"})      # same QueryResult types

Errors are raised as the same ShoalError subclasses as embedded. Idempotent calls
(reads, upserts, list/describe) are retried with exponential backoff on UNAVAILABLE;
every call has a timeout. Upserts larger than ``batch_size`` are validated whole on
the client and then streamed in chunks (``Points.UpsertStream``).

How the SDK is built: every remote method is written once, as a generator that builds its
request(s), ``yield``s an ``Rpc`` and receives the response (``@remote``). ``Client`` drives those
generators with blocking calls, ``shoal.AsyncClient`` (``rpc/async_client.py``) with ``grpc.aio``
awaits, so the two have the same methods, arguments, validation and results by construction.
"""
from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from ..engine.collection import INCLUDE_FIELDS
from ..engine.echo import shorten
from ..engine.errors import InvalidArgumentError
from ..engine.ids import check_ids, check_unique
from ..engine.metadata import check_metadata, is_plain_payload
from ..engine.multivector import check_records, is_set_batch
from ..engine.records import MAX_PAGE, check_count, iter_records, check_cursor, check_include, check_keys, check_selection
from ..engine.results import GetResult, Group, QueryResult, Record, ScrollPage
from ..engine.search_modes import check_group, check_threshold
from ..engine.validation import as_matrix, check_k
from . import convert
from .hybrid import fill_hybrid
from .status import error_from_rpc
from .hybrid import fill_hybrid
from .v1 import admin_pb2, collections_pb2, points_pb2, search_pb2, service_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
STREAM_MESSAGE_BYTES = 4 * 1024 * 1024  # vector bytes per streamed upsert message (well under the limit)


@dataclass(frozen=True)
class Rpc:
    """One call a remote method asks its driver to make: ``stub.method(request)``.

    ``stream``: ``request`` is a function returning the request iterator (called again per retry)."""

    stub: str
    method: str
    request: Any
    idempotent: bool
    stream: bool = False


Steps = Generator[Rpc, Any, Any]


def remote(gen: Callable[..., Steps]) -> Callable[..., Any]:
    """A blocking method from a request/response generator (``AsyncClient`` drives the same one)."""

    @functools.wraps(gen)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._drive(gen(self, *args, **kwargs))

    method.steps = gen  # type: ignore[attr-defined]
    return method


def _text(value: Any, name: str) -> str:
    """A string argument (a protobuf string field would raise a raw TypeError on anything else)."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, got {shorten(value)}")
    return value


def _include_flags(include: Iterable[str]) -> dict[str, bool]:
    include = tuple(include)
    return {"include_metadata": "metadata" in include, "include_vectors": "vector" in include}


def _set_filter(request: Any, filter: Any) -> Any:
    if filter is not None:
        request.filter.CopyFrom(convert.filter_to_proto(filter))
    return request


def _search_include(include: Iterable[str]) -> tuple[str, ...]:
    return check_include(include, INCLUDE_FIELDS)


def _collection_request(cls: Any, name: str, dim: Any, metric: str, index: str, options: dict[str, Any]) -> Any:
    """A Create / GetOrCreate request: dim checked, ``metadata`` apart from the index options."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r}")
    options = dict(options)
    metadata = options.pop("metadata", None)
    request = cls(name=name, dim=int(dim), metric=metric, index=index, index_options=convert.metadata_to_proto(options))
    if metadata is not None:
        request.metadata.CopyFrom(convert.metadata_to_proto(metadata))
    return request


class _Driven:
    """Something whose ``@remote`` methods run through ``self._client``."""

    _client: Any

    def _drive(self, steps: Steps) -> Any:
        return self._client._drive(steps)


class ClientBase(_Driven):
    """The Database API as request/response generators (shared by ``Client`` and ``AsyncClient``)."""

    collection_class: type
    stream_message_bytes = STREAM_MESSAGE_BYTES

    def _setup(self, channel: Any, target: str, api_key: str | None, timeout: float, retries: int,
               backoff: float, batch_size: int) -> None:
        self._channel = channel
        self._client = self
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.batch_size = batch_size
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.collections = service_pb2_grpc.CollectionsStub(channel)
        self.points = service_pb2_grpc.PointsStub(channel)
        self.searcher = service_pb2_grpc.SearchStub(channel)
        self.admin = service_pb2_grpc.AdminStub(channel)

    def _retry_delay(self, err: grpc.RpcError, call: Rpc, attempt: int) -> float | None:
        """Seconds to wait before retrying a failed call, or None to raise it."""
        if call.idempotent and err.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
            return self.backoff * (2 ** attempt) * (0.5 + random.random())
        return None

    def _invoke(self, call: Rpc, timeout: float | None = None) -> Any:
        method = getattr(getattr(self, call.stub), call.method)
        request = call.request() if call.stream else call.request
        return method(request, timeout=timeout or self.timeout, metadata=self._metadata)

    # --------------------------------------------------------- collections
    @remote
    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "flat",
                          **options: Any) -> Steps:
        """Create a collection on the server (same arguments as ``Database.create_collection``,
        including ``metadata={...}``); returns its RemoteCollection."""
        request = _collection_request(collections_pb2.CreateCollectionRequest, name, dim, metric, index, options)
        info = yield Rpc("collections", "Create", request, False)
        return self.collection_class(self, info)

    @remote
    def get_collection(self, name: str) -> Steps:
        """The server's collection of that name (CollectionNotFoundError otherwise)."""
        info = yield Rpc("collections", "Get", collections_pb2.GetCollectionRequest(name=name), True)
        return self.collection_class(self, info)

    @remote
    def get_or_create_collection(self, name: str, dim: int, metric: str | None = None, index: str | None = None,
                                 **options: Any) -> Steps:
        """The collection, created if missing; CollectionConfigMismatchError when it exists with another
        dim or a given metric / index / index option (decided on the server, atomically)."""
        request = _collection_request(collections_pb2.GetOrCreateCollectionRequest, name, dim, metric or "",
                                      index or "", options)
        info = yield Rpc("collections", "GetOrCreate", request, True)
        return self.collection_class(self, info)

    @remote
    def list_collections(self) -> Steps:
        """Names of the server's collections, sorted."""
        response = yield Rpc("collections", "List", collections_pb2.ListCollectionsRequest(), True)
        return list(response.names)

    @remote
    def drop_collection(self, name: str) -> Steps:
        """Remove a collection and its data (CollectionNotFoundError when it does not exist)."""
        yield Rpc("collections", "Drop", collections_pb2.DropCollectionRequest(name=name), False)

    @remote
    def rename_collection(self, name: str, new_name: str) -> Steps:
        """Rename a collection (durably on a durable server); returns the handle under the new name."""
        info = yield Rpc("collections", "Rename", collections_pb2.RenameCollectionRequest(name=name,
                                                                                          new_name=new_name), False)
        return self.collection_class(self, info)

    # --------------------------------------------------------------- admin
    def _admin(self, method: str, collection: str = "", path: str = "") -> Steps:
        response = yield Rpc("admin", method, admin_pb2.AdminRequest(collection=collection, path=path), True)
        return convert.metadata_from_proto(response.result)

    @remote
    def flush(self) -> Steps:
        """Make every collection durable up to now (server's ``flush``)."""
        yield from self._admin("Flush")

    @remote
    def compact(self) -> Steps:
        """Compact every collection; returns {collection: whether anything changed}."""
        return (yield from self._admin("Compact"))

    @remote
    def snapshot(self, name: str) -> Steps:
        """Write a consistent copy of the database as ``name`` in the server's snapshot directory
        (``shoal serve --snapshot-dir``); a name, not a path."""
        yield from self._admin("Snapshot", path=name)

    @remote
    def stats(self) -> Steps:
        """The server's database path and every collection's ``describe()``."""
        return (yield from self._admin("Stats"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class Client(ClientBase):
    """A connection to a Shoal server with the Database API (blocking calls)."""

    def __init__(self, target: str = "localhost:50051", *, api_key: str | None = None, timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.05, tls: bool = False, root_certificates: bytes | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, batch_size: int = 4096) -> None:
        """Connect to ``target`` ("host:port"). ``api_key`` is sent as ``authorization: Bearer``;
        ``timeout`` bounds each call (s); UNAVAILABLE is retried ``retries`` times for idempotent
        calls; ``tls``/``root_certificates`` select TLS; upserts over ``batch_size`` rows stream."""
        options = channel_options(max_message_bytes)
        if tls or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            channel = grpc.secure_channel(target, creds, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        self._setup(channel, target, api_key, timeout, retries, backoff, batch_size)

    def call(self, method: Any, request: Any, *, idempotent: bool, timeout: float | None = None) -> Any:
        """Run one RPC: auth metadata, timeout, retries on UNAVAILABLE when safe, errors as ShoalError."""
        return self._run(Rpc("", "", request, idempotent), lambda: method(request, timeout=timeout or self.timeout,
                                                                         metadata=self._metadata))

    def _run(self, call: Rpc, invoke: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return invoke()
            except grpc.RpcError as err:
                delay = self._retry_delay(err, call, attempt)
                if delay is None:
                    raise error_from_rpc(err) from None
                time.sleep(delay)
                attempt += 1

    def _drive(self, steps: Steps) -> Any:
        try:
            call = next(steps)
            while True:
                call = steps.send(self._run(call, functools.partial(self._invoke, call)))
        except StopIteration as done:
            return done.value

    def close(self) -> None:
        """Close the channel; calls afterwards fail."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


class RemoteCollectionBase(_Driven):
    """A server-side collection with the embedded ``Collection`` methods, as request/response generators.

    Arguments, defaults, validation, results and errors are those of ``Collection`` (see its
    docstrings); arguments are checked here before anything is sent.
    """

    def __init__(self, client: Any, info: collections_pb2.CollectionInfo) -> None:
        self._client = client
        self.name = info.name
        self.dim = info.dim
        self.metric = info.metric
        self.index_spec = info.index
        self.index_options = convert.metadata_from_proto(info.index_options)
        self.metadata = convert.metadata_from_proto(info.metadata)

    # -------------------------------------------------------------- writes
    @remote
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> Steps:
        """Insert or replace whole records (see ``Collection.upsert``: without metadata the payload becomes
        ``{}``); returns how many were written. Loads over ``client.batch_size`` rows (or 4 MiB) are
        validated whole, then streamed in chunks."""
        if self.index_options.get("multivector"):
            return (yield from self._upsert_sets(ids, vectors, metadata))
        ids_list = check_ids(ids)
        if not ids_list and np.size(vectors) == 0:
            return 0
        step = max(1, min(self._client.batch_size, self._client.stream_message_bytes // (4 * self.dim)))
        n_rows = np.shape(vectors)[0] if np.ndim(vectors) == 2 else 1
        if len(ids_list) <= step or n_rows != len(ids_list):
            request = self._upsert_request(ids_list, vectors, self._check_payloads(metadata, len(ids_list)))
            response = yield Rpc("points", "Upsert", request, True)
            return response.upserted
        x = as_matrix(vectors, self.dim)
        check_unique(ids_list)
        payloads = self._check_payloads(metadata, len(ids_list))

        def chunks() -> Iterator[points_pb2.UpsertRequest]:
            for lo in range(0, len(ids_list), step):
                yield self._upsert_request(ids_list[lo:lo + step], x[lo:lo + step],
                                           None if payloads is None else payloads[lo:lo + step])

        # Each attempt streams from the first chunk again; re-applying upserts leaves the same state.
        response = yield Rpc("points", "UpsertStream", chunks, True, stream=True)
        return response.upserted

    def _upsert_sets(self, ids: Any, vectors: Any, metadata: Any) -> Steps:
        """``upsert`` of a multi-vector collection: one ``(m, dim)`` array per id, validated whole, sent in
        chunks of whole records of at most ``client.batch_size`` rows (or 4 MiB)."""
        ids_list, sets = check_records(ids, vectors, self.dim)
        if not ids_list:
            return 0
        payloads = self._check_payloads(metadata, len(ids_list))
        step = max(1, min(self._client.batch_size, self._client.stream_message_bytes // (4 * self.dim)))
        chunks, lo, rows = [], 0, 0
        for i, s in enumerate(sets):
            if i > lo and rows + s.shape[0] > step:
                chunks.append((lo, i))
                lo, rows = i, 0
            rows += s.shape[0]
        chunks.append((lo, len(sets)))

        def request(lo: int, hi: int) -> points_pb2.UpsertRequest:
            return points_pb2.UpsertRequest(
                collection=self.name, ids=convert.ids_to_proto(ids_list[lo:hi]),
                vectors=convert.vector_sets_to_proto(sets[lo:hi], self.dim),
                metadata=[] if payloads is None else [convert.metadata_to_proto(m) for m in payloads[lo:hi]])

        if len(chunks) == 1:
            response = yield Rpc("points", "Upsert", request(0, len(sets)), True)
        else:
            response = yield Rpc("points", "UpsertStream", lambda: (request(a, b) for a, b in chunks), True,
                                 stream=True)
        return response.upserted

    @staticmethod
    def _check_payloads(metadata: Any, n: int) -> list[dict[str, Any]] | None:
        if metadata is None:
            return None
        if isinstance(metadata, Mapping):
            metadata = [metadata]
        metadata = list(metadata)
        if len(metadata) != n:
            raise InvalidArgumentError(f"got {len(metadata)} metadata entries for {n} ids; lengths must match")
        # Only validity matters here (the server normalises what it stores): a plain row goes as it is.
        return [m if is_plain_payload(m) else check_metadata(m, f"metadata[{i}]") for i, m in enumerate(metadata)]

    def _upsert_request(self, ids: list[Any], vectors: Any, payloads: list[dict[str, Any]] | None
                        ) -> points_pb2.UpsertRequest:
        """Checked payloads as one JSON array and int ids packed: no message per row (issue 27)."""
        request = points_pb2.UpsertRequest(collection=self.name, vectors=convert.vectors_to_proto(vectors))
        convert.fill_upsert_ids(request, ids)
        if payloads is not None:
            request.metadata_json = convert.payloads_to_json(payloads)
        return request

    @remote
    def delete(self, ids: Any = None, filter: Any = None) -> Steps:
        """Delete by ids and/or filter (missing ids are ignored); returns how many were deleted."""
        request = points_pb2.DeletePointsRequest(collection=self.name, by_ids=ids is not None)
        if ids is not None:
            request.ids.extend(convert.ids_to_proto(check_ids(ids)))
        response = yield Rpc("points", "Delete", _set_filter(request, filter), False)
        return response.deleted

    @remote
    def update(self, ids: Any, *, vectors: Any = None, metadata: Any = None) -> Steps:
        """Change only the given vectors and/or metadata (replacing each payload) of existing records;
        IdNotFoundError when an id is missing. Returns how many were updated."""
        ids_list = check_ids(ids)
        check_unique(ids_list)
        if vectors is None and metadata is None:
            raise InvalidArgumentError("update needs vectors and/or metadata")
        request = points_pb2.UpdateRequest(collection=self.name, ids=convert.ids_to_proto(ids_list))
        if vectors is not None:
            x = as_matrix(vectors, self.dim)
            if x.shape[0] != len(ids_list):
                raise InvalidArgumentError(f"got {len(ids_list)} ids for {x.shape[0]} vectors; lengths must match")
            request.vectors.CopyFrom(convert.vectors_to_proto(x))
        if metadata is not None:
            payloads = ([check_metadata(metadata)] * len(ids_list) if isinstance(metadata, Mapping)
                        else self._check_payloads(metadata, len(ids_list)))
            request.has_metadata = True
            for p in payloads or ():
                convert.fill_metadata(request.metadata.add(), p)
        if not ids_list:
            return 0
        response = yield Rpc("points", "Update", request, True)
        return response.updated

    @remote
    def set_metadata(self, ids: Any = None, filter: Any = None, *, values: Mapping[str, Any]) -> Steps:
        """Merge ``values`` into the payloads of the records given by ids and/or filter; returns how many."""
        ids_list = check_selection(ids, filter, "set_metadata")
        request = points_pb2.SetMetadataRequest(collection=self.name, by_ids=ids_list is not None,
                                                ids=convert.ids_to_proto(ids_list or []),
                                                values=convert.metadata_to_proto(check_metadata(values, "values")))
        response = yield Rpc("points", "SetMetadata", _set_filter(request, filter), True)
        return response.updated

    @remote
    def delete_metadata_keys(self, ids: Any = None, filter: Any = None, *, keys: Iterable[str]) -> Steps:
        """Remove top-level ``keys`` from the payloads of the records given by ids and/or filter."""
        ids_list = check_selection(ids, filter, "delete_metadata_keys")
        request = points_pb2.DeleteMetadataKeysRequest(collection=self.name, by_ids=ids_list is not None,
                                                       ids=convert.ids_to_proto(ids_list or []), keys=check_keys(keys))
        response = yield Rpc("points", "DeleteMetadataKeys", _set_filter(request, filter), True)
        return response.updated

    # --------------------------------------------------------------- reads
    @remote
    def count(self, filter: Any = None) -> Steps:
        """Number of records, or of those matching ``filter``."""
        request = _set_filter(points_pb2.CountRequest(collection=self.name), filter)
        response = yield Rpc("points", "Count", request, True)
        return response.count

    @remote
    def get(self, ids: Any = None, *, filter: Any = None, limit: int | None = None, offset: int = 0,
            include: Iterable[str] = ("metadata", "vector"), missing: str = "raise") -> Steps:
        """Records by ids, or those matching ``filter`` in id order (see ``Collection.get``)."""
        include = check_include(include)
        if missing not in ("raise", "skip"):
            raise InvalidArgumentError(f"missing must be 'raise' or 'skip', got {missing!r}")
        request = points_pb2.GetPointsRequest(collection=self.name, select=ids is None,
                                              offset=check_count(offset, "offset"), skip_missing=missing == "skip",
                                              **_include_flags(include))
        if ids is not None:
            request.ids.extend(convert.ids_to_proto(check_ids(ids)))
        if check_count(limit, "limit", none_ok=True) is not None:
            request.limit = limit
        response = yield Rpc("points", "Get", _set_filter(request, filter), True)
        return self._records(response)

    def _records(self, msg: Any) -> GetResult:
        """A GetPointsResponse as the GetResult embedded returns (vector sets for multi-vector records)."""
        res = convert.get_result_from_proto(msg, self.dim)
        if self.index_options.get("multivector"):
            res.vectors = _as_sets(res.vectors)
        return res

    @remote
    def scroll(self, filter: Any = None, limit: int = 100, cursor: Any = None,
               include: Iterable[str] = ("metadata",)) -> Steps:
        """One page in id order after ``cursor`` (see ``Collection.scroll``); ``next_cursor`` None at the end."""
        request = points_pb2.ScrollRequest(collection=self.name, limit=check_count(limit, "limit", low=1, high=MAX_PAGE),
                                           **_include_flags(check_include(include)))
        after = check_cursor(cursor)
        if after is not None:
            request.cursor.CopyFrom(convert.ids_to_proto([after])[0])
        response = yield Rpc("points", "Scroll", _set_filter(request, filter), True)
        cursor = convert.ids_from_proto([response.next_cursor])[0] if response.HasField("next_cursor") else None
        return ScrollPage(self._records(response.records), cursor)

    def iter(self, batch_size: int = 256, filter: Any = None, include: Iterable[str] = ("metadata",)
             ) -> Iterator[Record]:
        """Every record matching ``filter``, in id order, ``batch_size`` per call (``scroll``)."""
        return iter_records(self.scroll, batch_size, filter, include)

    @remote
    def exists(self, ids: Any) -> Steps:
        """Whether each id is stored, in the order given."""
        request = points_pb2.ExistsRequest(collection=self.name, ids=convert.ids_to_proto(check_ids(ids)))
        response = yield Rpc("points", "Exists", request, True)
        return list(response.exists)

    @remote
    def search(self, queries: Any = None, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = ("metadata", "distance"), explain: bool = False, *,
               score_threshold: float | None = None, group_by: str | None = None, group_size: int = 1,
               text: Any = None, sparse: Any = None, fusion: str = "rrf",
               fusion_params: Mapping[str, Any] | None = None, candidates: int | None = None,
               exact: bool = False) -> Steps:
        """k nearest records per query (see ``Collection.search``); a 1-D query returns one result, a 2-D
        batch a list; with ``group_by``, Groups instead of hits. ``explain=True`` fills ``result.plan``
        as embedded. ``text`` / ``sparse`` / ``fusion`` as in ``Collection.search`` (hybrid retrieval)."""
        include = _search_include(include)
        if queries is None and text is None and sparse is None:
            raise InvalidArgumentError("search needs queries (vectors), text or sparse")
        batch = search_pb2.QueryBatch(k=check_k(k))
        single = True
        multivector = bool(self.index_options.get("multivector"))
        if queries is not None and multivector:  # one set of query vectors, or a list of sets
            sets = queries if is_set_batch(queries) else [queries]
            batch.vectors.CopyFrom(convert.vector_sets_to_proto(
                [as_matrix(q, self.dim, name=f"queries[{i}]") for i, q in enumerate(sets)], self.dim))
            single = not is_set_batch(queries)
        elif queries is not None:
            batch.vectors.CopyFrom(convert.vectors_to_proto(queries))
            single = np.ndim(queries) == 1
        if text is not None or sparse is not None:
            single = fill_hybrid(batch, text, sparse, fusion, fusion_params)[1] and single
        _set_filter(batch, filter)
        extra = {"candidates": candidates} if candidates is not None else {}
        for key, value in {**(params or {}), **extra, **({"exact": True} if exact else {})}.items():
            batch.params[key].CopyFrom(convert.value_to_proto(value))
        threshold = check_threshold(score_threshold, "score_threshold")
        if threshold is not None:
            batch.score_threshold = threshold
        if group_by is not None:
            batch.group_size = check_group(group_by, group_size)
            batch.group_by = group_by
        request = search_pb2.SearchRequest(collection=self.name, batches=[batch],
                                           include_metadata="metadata" in include,
                                           include_vectors="vector" in include, explain=explain,
                                           packed_int_ids=True)
        response = yield Rpc("searcher", "Search", request, True)
        keep_meta = "metadata" in include
        results: list[QueryResult] | list[list[Group]]
        if group_by is not None:
            results = [convert.groups_from_proto(g, keep_meta) for g in response.grouped]
        else:
            results = [convert.query_result_from_proto(r, keep_meta) for r in response.results]
            for r in results if multivector else ():
                r.vectors = _as_sets(r.vectors)
            if batch.hybrid:  # a hybrid search with no hits still reports (no) retrievers, as embedded
                for r in results:
                    r.retrievers = r.retrievers or []
        return results[0] if single else results

    @remote
    def search_range(self, queries: Any, radius: float, filter: Any = None, limit: int | None = None,
                     params: Mapping[str, Any] | None = None,
                     include: Iterable[str] = ("metadata", "distance")) -> Steps:
        """Every record with distance < ``radius`` per query (see ``Collection.search_range``)."""
        single = np.ndim(queries) == 1
        include = _search_include(include)
        request = search_pb2.RangeSearchRequest(collection=self.name, vectors=convert.vectors_to_proto(queries),
                                                radius=check_threshold(radius, "radius"),
                                                limit=0 if limit is None else check_k(limit), **_include_flags(include))
        for key, value in (params or {}).items():
            request.params[key].CopyFrom(convert.value_to_proto(value))
        response = yield Rpc("searcher", "SearchRange", _set_filter(request, filter), True)
        results = [convert.query_result_from_proto(r, "metadata" in include) for r in response.results]
        return results[0] if single else results

    @remote
    def recommend(self, positive: Any, negative: Any = None, k: int = 10, filter: Any = None,
                  params: Mapping[str, Any] | None = None, include: Iterable[str] = ("metadata", "distance"),
                  score_threshold: float | None = None) -> Steps:
        """Records like the positive examples and unlike the negative ones (see ``Collection.recommend``)."""
        from ..engine.search_modes import split_examples

        include = _search_include(include)
        pos_ids, pos_vec = split_examples(positive, "positive", self.dim)
        neg_ids, neg_vec = split_examples(negative, "negative", self.dim)
        if not pos_ids and not pos_vec.shape[0]:
            raise InvalidArgumentError("recommend needs at least one positive example (an id or a vector)")
        request = search_pb2.RecommendRequest(collection=self.name, positive_ids=convert.ids_to_proto(pos_ids),
                                              negative_ids=convert.ids_to_proto(neg_ids), k=check_k(k),
                                              **_include_flags(include))
        if pos_vec.shape[0]:
            request.positive_vectors.CopyFrom(convert.vectors_to_proto(pos_vec))
        if neg_vec.shape[0]:
            request.negative_vectors.CopyFrom(convert.vectors_to_proto(neg_vec))
        for key, value in (params or {}).items():
            request.params[key].CopyFrom(convert.value_to_proto(value))
        threshold = check_threshold(score_threshold, "score_threshold")
        if threshold is not None:
            request.score_threshold = threshold
        response = yield Rpc("searcher", "Recommend", _set_filter(request, filter), True)
        return convert.query_result_from_proto(response.results[0], "metadata" in include)

    # --------------------------------------------------------------- admin
    @remote
    def describe(self) -> Steps:
        """Name, shape, index configuration, user metadata and counts (the server's ``describe()`` subset)."""
        info = yield Rpc("collections", "Get", collections_pb2.GetCollectionRequest(name=self.name), True)
        return {"name": info.name, "dim": info.dim, "metric": info.metric, "index": info.index,
                "index_options": convert.metadata_from_proto(info.index_options),
                "metadata": convert.metadata_from_proto(info.metadata), "count": info.count,
                "segments": info.segments, "backend": info.backend,
                "payload_indexes": convert.metadata_from_proto(info.payload_indexes) or None}

    @remote
    def create_payload_index(self, field: str, kind: str) -> Steps:
        """Index payload ``field`` as ``kind`` ("keyword" or "range") on the server, durably (see
        ``Collection.create_payload_index``); returns False when it already was."""
        request = collections_pb2.PayloadIndexRequest(collection=self.name, field=_text(field, "field"),
                                                      kind=_text(kind, "kind"))
        return (yield Rpc("collections", "CreatePayloadIndex", request, False)).changed

    @remote
    def drop_payload_index(self, field: str) -> Steps:
        """Stop indexing payload ``field`` (``PayloadIndexNotFoundError`` when it is not indexed)."""
        request = collections_pb2.PayloadIndexRequest(collection=self.name, field=_text(field, "field"))
        yield Rpc("collections", "DropPayloadIndex", request, False)

    @remote
    def flush(self) -> Steps:
        """Seal the growing segment on the server (durably, for a durable server)."""
        yield from self._client._admin("Flush", collection=self.name)

    @remote
    def compact(self) -> Steps:
        """Drop deleted rows and rebuild the index (see ``Collection.compact``); returns whether anything changed."""
        return bool((yield from self._client._admin("Compact", collection=self.name)).get("result"))

    @remote
    def snapshot(self, name: str) -> Steps:
        """Write a consistent copy of this collection as ``name`` in the server's snapshot directory."""
        yield from self._client._admin("Snapshot", collection=self.name, path=name)

    @remote
    def stats(self) -> Steps:
        """The collection's ``describe()`` on the server (segments, optimizer, planner)."""
        return (yield from self._client._admin("Stats", collection=self.name))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, dim={self.dim}, metric={self.metric!r}, "
                f"index={self.index_spec!r})")


class RemoteCollection(RemoteCollectionBase):
    """A collection of a ``shoal.Client`` (blocking calls)."""

    def __len__(self) -> int:
        return self.count()


Client.collection_class = RemoteCollection


def _as_sets(vectors: Any) -> Any:
    """Multi-vector results: the sets as a list (none at all: an empty list, as embedded)."""
    return list(vectors) if isinstance(vectors, np.ndarray) else vectors
