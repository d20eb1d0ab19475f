from shoal.rpc.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "ids", "vectors", "metadata", "int_ids", "metadata_json")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INT_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    vectors: _types_pb2.Vectors
    metadata: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    int_ids: _containers.RepeatedScalarFieldContainer[int]
    metadata_json: bytes
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., metadata: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ..., int_ids: _Optional[_Iterable[int]] = ..., metadata_json: _Optional[bytes] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class GetPointsRequest(_message.Message):
    __slots__ = ("collection", "ids", "select", "filter", "limit", "offset", "include_metadata", "include_vectors", "skip_missing")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    SKIP_MISSING_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    select: bool
    filter: _types_pb2.Filter
    limit: int
    offset: int
    include_metadata: bool
    include_vectors: bool
    skip_missing: bool
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., select: _Optional[bool] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ..., skip_missing: _Optional[bool] = ...) -> None: ...

class GetPointsResponse(_message.Message):
    __slots__ = ("ids", "vectors", "metadata", "metadata_included")
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    vectors: _types_pb2.Vectors
    metadata: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    metadata_included: bool
    def __init__(self, ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., metadata: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ..., metadata_included: _Optional[bool] = ...) -> None: ...

class ScrollRequest(_message.Message):
    __slots__ = ("collection", "filter", "limit", "cursor", "include_metadata", "include_vectors")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _types_pb2.Filter
    limit: int
    cursor: _types_pb2.PointId
    include_metadata: bool
    include_vectors: bool
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., limit: _Optional[int] = ..., cursor: _Optional[_Union[_types_pb2.PointId, _Mapping]] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class ScrollResponse(_message.Message):
    __slots__ = ("records", "next_cursor")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    records: GetPointsResponse
    next_cursor: _types_pb2.PointId
    def __init__(self, records: _Optional[_Union[GetPointsResponse, _Mapping]] = ..., next_cursor: _Optional[_Union[_types_pb2.PointId, _Mapping]] = ...) -> None: ...

class ExistsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ...) -> None: ...

class ExistsResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, exists: _Optional[_Iterable[bool]] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("collection", "ids", "vectors", "metadata", "has_metadata")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    HAS_METADATA_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    vectors: _types_pb2.Vectors
    metadata: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    has_metadata: bool
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., metadata: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ..., has_metadata: _Optional[bool] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class SetMetadataRequest(_message.Message):
    __slots__ = ("collection", "ids", "by_ids", "filter", "values")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    BY_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    by_ids: bool
    filter: _types_pb2.Filter
    values: _types_pb2.Metadata
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., by_ids: _Optional[bool] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., values: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ...) -> None: ...

class DeleteMetadataKeysRequest(_message.Message):
    __slots__ = ("collection", "ids", "by_ids", "filter", "keys")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    BY_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    by_ids: bool
    filter: _types_pb2.Filter
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., by_ids: _Optional[bool] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class DeletePointsRequest(_message.Message):
    __slots__ = ("collection", "ids", "by_ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    BY_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    by_ids: bool
    filter: _types_pb2.Filter
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., by_ids: _Optional[bool] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ...) -> None: ...

class DeletePointsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("collection", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _types_pb2.Filter
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...
