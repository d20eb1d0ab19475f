from shoal.rpc.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdminRequest(_message.Message):
    __slots__ = ("collection", "path")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    collection: str
    path: str
    def __init__(self, collection: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class AdminResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.Metadata
    def __init__(self, result: _Optional[_Union[_types_pb2.Metadata, _Mapping]] = ...) -> None: ...
