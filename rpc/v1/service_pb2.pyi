from shoal.rpc.v1 import collections_pb2 as _collections_pb2
from shoal.rpc.v1 import points_pb2 as _points_pb2
from shoal.rpc.v1 import search_pb2 as _search_pb2
from shoal.rpc.v1 import admin_pb2 as _admin_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
