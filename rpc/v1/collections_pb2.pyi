from shoal.rpc.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CollectionInfo(_message.Message):
    __slots__ = ("name", "dim", "metric", "index", "index_options", "count", "segments", "backend", "metadata", "payload_indexes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    INDEX_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_INDEXES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: str
    index: str
    index_options: _types_pb2.Metadata
    count: int
    segments: int
    backend: str
    metadata: _types_pb2.Metadata
    payload_indexes: _types_pb2.Metadata
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., index: _Optional[str] = ..., index_options: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ..., count: _Optional[int] = ..., segments: _Optional[int] = ..., backend: _Optional[str] = ..., metadata: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ..., payload_indexes: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "dim", "metric", "index", "index_options", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    INDEX_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: str
    index: str
    index_options: _types_pb2.Metadata
    metadata: _types_pb2.Metadata
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., index: _Optional[str] = ..., index_options: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ..., metadata: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ...) -> None: ...

class GetOrCreateCollectionRequest(_message.Message):
    __slots__ = ("name", "dim", "metric", "index", "index_options", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    INDEX_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: str
    index: str
    index_options: _types_pb2.Metadata
    metadata: _types_pb2.Metadata
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., index: _Optional[str] = ..., index_options: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ..., metadata: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ...) -> None: ...

class RenameCollectionRequest(_message.Message):
    __slots__ = ("name", "new_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    new_name: str
    def __init__(self, name: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PayloadIndexRequest(_message.Message):
    __slots__ = ("collection", "field", "kind")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    collection: str
    field: str
    kind: str
    def __init__(self, collection: _Optional[str] = ..., field: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class PayloadIndexResponse(_message.Message):
    __slots__ = ("changed", "info")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    info: CollectionInfo
    def __init__(self, changed: _Optional[bool] = ..., info: _Optional[_Union[CollectionInfo, _Mapping]] = ...) -> None: ...
