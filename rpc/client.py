"""Client SDK: ``shoal.Client`` mirrors ``shoal.Database`` / ``Collection`` over gRPC.

    db = shoal.Client("localhost:50051", api_key="...")   # instead of shoal.Database(...)
    docs = db.create_collection("docs", dim=384)
    docs.upsert(ids, vectors, metadata)
    docs.search(queries, k=10, filter={"lang": "en"})      # same QueryResult types

Errors are raised as the same ShoalError subclasses as embedded. Idempotent calls
(reads, upserts, list/describe) are retried with exponential backoff on UNAVAILABLE;
every call has a timeout. Upserts larger than ``batch_size`` are validated whole on
the client and then streamed in chunks (``Points.UpsertStream``).
"""
from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc
import numpy as np

from ..engine.collection import INCLUDE_FIELDS
from ..engine.errors import CollectionNotFoundError, InvalidArgumentError
from ..engine.ids import check_ids, check_unique
from ..engine.metadata import check_metadata
from ..engine.results import GetResult, QueryResult
from ..engine.validation import as_matrix, check_k
from . import convert
from .status import error_from_rpc
from .hybrid import fill_hybrid
from .v1 import admin_pb2, collections_pb2, points_pb2, search_pb2, service_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
STREAM_MESSAGE_BYTES = 4 * 1024 * 1024  # vector bytes per streamed upsert message (well under the limit)


class Client:
    """A connection to a Shoal server with the Database API."""

    def __init__(self, target: str = "localhost:50051", *, api_key: str | None = None, timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.05, tls: bool = False, root_certificates: bytes | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, batch_size: int = 4096) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.batch_size = batch_size
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.collections = service_pb2_grpc.CollectionsStub(self._channel)
        self.points = service_pb2_grpc.PointsStub(self._channel)
        self.searcher = service_pb2_grpc.SearchStub(self._channel)
        self.admin = service_pb2_grpc.AdminStub(self._channel)

    # ------------------------------------------------------------ plumbing
    def call(self, method: Any, request: Any, *, idempotent: bool, timeout: float | None = None) -> Any:
        """Run one RPC: auth metadata, timeout, retries on UNAVAILABLE when safe, errors as ShoalError."""
        attempt = 0
        while True:
            try:
                return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                if idempotent and err.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(self.backoff * (2 ** attempt) * (0.5 + random.random()))
                    attempt += 1
                    continue
                raise error_from_rpc(err) from None

    # --------------------------------------------------------- collections
    def create_collection(self, name: str, dim: int, metric: str = "cosine", index: str = "flat",
                          **options: Any) -> "RemoteCollection":
        """Create a collection on the server (same arguments as ``Database.create_collection``)."""
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r}")
        request = collections_pb2.CreateCollectionRequest(name=name, dim=int(dim), metric=metric, index=index,
                                                          index_options=convert.metadata_to_proto(options))
        return RemoteCollection(self, self.call(self.collections.Create, request, idempotent=False))

    def get_collection(self, name: str) -> "RemoteCollection":
        info = self.call(self.collections.Get, collections_pb2.GetCollectionRequest(name=name), idempotent=True)
        return RemoteCollection(self, info)

    def get_or_create_collection(self, name: str, dim: int, **kwargs: Any) -> "RemoteCollection":
        try:
            return self.get_collection(name)
        except CollectionNotFoundError:
            return self.create_collection(name, dim, **kwargs)

    def list_collections(self) -> list[str]:
        return list(self.call(self.collections.List, collections_pb2.ListCollectionsRequest(), idempotent=True).names)

    def drop_collection(self, name: str) -> None:
        self.call(self.collections.Drop, collections_pb2.DropCollectionRequest(name=name), idempotent=False)

    # --------------------------------------------------------------- admin
    def _admin(self, method: Any, collection: str = "", path: str = "") -> dict[str, Any]:
        response = self.call(method, admin_pb2.AdminRequest(collection=collection, path=path), idempotent=True)
        return convert.metadata_from_proto(response.result)

    def flush(self) -> None:
        """Make every collection durable up to now (server's ``flush``)."""
        self._admin(self.admin.Flush)

    def compact(self) -> dict[str, Any]:
        """Compact every collection; returns {collection: whether anything changed}."""
        return self._admin(self.admin.Compact)

    def snapshot(self, name: str) -> None:
        """Write a consistent copy of the database as ``name`` in the server's snapshot directory
        (``shoal serve --snapshot-dir``); a name, not a path."""
        self._admin(self.admin.Snapshot, path=name)

    def stats(self) -> dict[str, Any]:
        return self._admin(self.admin.Stats)

    # ----------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r})"


class RemoteCollection:
    """A server-side collection with the embedded ``Collection`` methods."""

    def __init__(self, client: Client, info: collections_pb2.CollectionInfo) -> None:
        self._client = client
        self.name = info.name
        self.dim = info.dim
        self.metric = info.metric
        self.index_spec = info.index
        self.index_options = convert.metadata_from_proto(info.index_options)

    # -------------------------------------------------------------- writes
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int:
        """Insert or replace records; larger loads (``client.batch_size`` rows or 4 MiB) are validated whole,
        then streamed in chunks."""
        ids_list = check_ids(ids)
        step = max(1, min(self._client.batch_size, STREAM_MESSAGE_BYTES // (4 * self.dim)))
        n_rows = np.shape(vectors)[0] if np.ndim(vectors) == 2 else 1
        if len(ids_list) <= step or n_rows != len(ids_list):
            request = self._upsert_request(ids_list, vectors, metadata)
            return self._client.call(self._client.points.Upsert, request, idempotent=True).upserted
        x = as_matrix(vectors, self.dim)
        check_unique(ids_list)
        payloads = self._check_payloads(metadata, len(ids_list))

        def chunks() -> Iterator[points_pb2.UpsertRequest]:
            for lo in range(0, len(ids_list), step):
                yield self._upsert_request(ids_list[lo:lo + step], x[lo:lo + step],
                                           None if payloads is None else payloads[lo:lo + step])

        # Each attempt streams from the first chunk again; re-applying upserts leaves the same state.
        return self._client.call(lambda _, **kw: self._client.points.UpsertStream(chunks(), **kw), None,
                                 idempotent=True).upserted

    @staticmethod
    def _check_payloads(metadata: Any, n: int) -> list[dict[str, Any]] | None:
        if metadata is None:
            return None
        if isinstance(metadata, Mapping):
            metadata = [metadata]
        metadata = list(metadata)
        if len(metadata) != n:
            raise InvalidArgumentError(f"got {len(metadata)} metadata entries for {n} ids; lengths must match")
        return [check_metadata(m, f"metadata[{i}]") for i, m in enumerate(metadata)]

    def _upsert_request(self, ids: list[Any], vectors: Any, metadata: Any) -> points_pb2.UpsertRequest:
        if isinstance(metadata, Mapping):
            metadata = [metadata]
        return points_pb2.UpsertRequest(
            collection=self.name, ids=convert.ids_to_proto(ids), vectors=convert.vectors_to_proto(vectors),
            metadata=[] if metadata is None else [convert.metadata_to_proto(m) for m in metadata])

    def delete(self, ids: Any = None, filter: Any = None) -> int:
        """Delete by ids (all must exist) and/or by filter; returns how many were deleted."""
        request = points_pb2.DeletePointsRequest(collection=self.name, by_ids=ids is not None)
        if ids is not None:
            request.ids.extend(convert.ids_to_proto(check_ids(ids)))
        if filter is not None:
            request.filter.CopyFrom(convert.filter_to_proto(filter))
        return self._client.call(self._client.points.Delete, request, idempotent=False).deleted

    # --------------------------------------------------------------- reads
    def count(self, filter: Any = None) -> int:
        request = points_pb2.CountRequest(collection=self.name)
        if filter is not None:
            request.filter.CopyFrom(convert.filter_to_proto(filter))
        return self._client.call(self._client.points.Count, request, idempotent=True).count

    def __len__(self) -> int:
        return self.count()

    def get(self, ids: Any) -> GetResult:
        request = points_pb2.GetPointsRequest(collection=self.name, ids=convert.ids_to_proto(check_ids(ids)))
        return convert.get_result_from_proto(self._client.call(self._client.points.Get, request, idempotent=True),
                                             self.dim)

    def search(self, queries: Any = None, k: int = 10, filter: Any = None, params: Mapping[str, Any] | None = None,
               include: Iterable[str] = ("metadata", "distance"), *, text: Any = None, sparse: Any = None,
               fusion: str = "rrf", fusion_params: Mapping[str, Any] | None = None) -> QueryResult | list[QueryResult]:
        """k nearest records per query; a 1-D query returns one QueryResult, a 2-D batch a list.

        ``text`` / ``sparse`` / ``fusion`` as in ``Collection.search`` (hybrid retrieval)."""
        include = tuple(include)
        bad = [f for f in include if f not in INCLUDE_FIELDS]
        if bad:
            raise InvalidArgumentError(f"unknown include field(s) {bad}; choose from {INCLUDE_FIELDS}")
        if queries is None and text is None and sparse is None:
            raise InvalidArgumentError("search needs queries (vectors), text or sparse")
        batch = search_pb2.QueryBatch(k=check_k(k))
        single = True
        if queries is not None:
            batch.vectors.CopyFrom(convert.vectors_to_proto(queries))
            single = np.ndim(queries) == 1
        if text is not None or sparse is not None:
            single = fill_hybrid(batch, text, sparse, fusion, fusion_params)[1] and single
        if filter is not None:
            batch.filter.CopyFrom(convert.filter_to_proto(filter))
        for key, value in (params or {}).items():
            batch.params[key].CopyFrom(convert.value_to_proto(value))
        request = search_pb2.SearchRequest(collection=self.name, batches=[batch],
                                           include_metadata="metadata" in include,
                                           include_vectors="vector" in include)
        response = self._client.call(self._client.searcher.Search, request, idempotent=True)
        results = [convert.query_result_from_proto(r, "metadata" in include) for r in response.results]
        if batch.hybrid:  # a hybrid search with no hits still reports (no) retrievers, as embedded
            for r in results:
                r.retrievers = r.retrievers or []
        return results[0] if single else results

    # --------------------------------------------------------------- admin
    def describe(self) -> dict[str, Any]:
        info = self._client.call(self._client.collections.Get,
                                 collections_pb2.GetCollectionRequest(name=self.name), idempotent=True)
        return {"name": info.name, "dim": info.dim, "metric": info.metric, "index": info.index,
                "index_options": convert.metadata_from_proto(info.index_options), "count": info.count,
                "segments": info.segments, "backend": info.backend}

    def flush(self) -> None:
        self._client._admin(self._client.admin.Flush, collection=self.name)

    def compact(self) -> bool:
        """Drop deleted rows and rebuild the index (see ``Collection.compact``); returns whether anything changed."""
        return bool(self._client._admin(self._client.admin.Compact, collection=self.name).get("result"))

    def snapshot(self, name: str) -> None:
        """Write a consistent copy of this collection as ``name`` in the server's snapshot directory."""
        self._client._admin(self._client.admin.Snapshot, collection=self.name, path=name)

    def stats(self) -> dict[str, Any]:
        return self._client._admin(self._client.admin.Stats, collection=self.name)

    def __repr__(self) -> str:
        return (f"RemoteCollection({self.name!r}, dim={self.dim}, metric={self.metric!r}, "
                f"index={self.index_spec!r})")
