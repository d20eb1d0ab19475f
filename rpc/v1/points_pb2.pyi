from shoal.rpc.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "ids", "vectors", "metadata")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    vectors: _types_pb2.Vectors
    metadata: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., metadata: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class GetPointsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ...) -> None: ...

class GetPointsResponse(_message.Message):
    __slots__ = ("ids", "vectors", "metadata")
    IDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    vectors: _types_pb2.Vectors
    metadata: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    def __init__(self, ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., metadata: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ...) -> None: ...

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
