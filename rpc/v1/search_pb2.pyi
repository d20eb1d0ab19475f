from shoal.rpc.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryBatch(_message.Message):
    __slots__ = ("vectors", "k", "filter", "params", "score_threshold", "group_by", "group_size", "hybrid", "fusion")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    HYBRID_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    vectors: _types_pb2.Vectors
    k: int
    filter: _types_pb2.Filter
    params: _containers.MessageMap[str, _types_pb2.Value]
    score_threshold: float
    group_by: str
    group_size: int
    hybrid: _containers.RepeatedCompositeFieldContainer[HybridQuery]
    fusion: Fusion
    def __init__(self, vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., params: _Optional[_Mapping[str, _types_pb2.Value]] = ..., score_threshold: _Optional[float] = ..., group_by: _Optional[str] = ..., group_size: _Optional[int] = ..., hybrid: _Optional[_Iterable[_Union[HybridQuery, _Mapping]]] = ..., fusion: _Optional[_Union[Fusion, _Mapping]] = ...) -> None: ...

class SparseVector(_message.Message):
    __slots__ = ("indices", "values")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class HybridQuery(_message.Message):
    __slots__ = ("text", "sparse")
    class TextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SparseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SparseVector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SparseVector, _Mapping]] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FIELD_NUMBER: _ClassVar[int]
    text: _containers.ScalarMap[str, str]
    sparse: _containers.MessageMap[str, SparseVector]
    def __init__(self, text: _Optional[_Mapping[str, str]] = ..., sparse: _Optional[_Mapping[str, SparseVector]] = ...) -> None: ...

class Fusion(_message.Message):
    __slots__ = ("method", "k", "prefetch", "weights")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    method: str
    k: int
    prefetch: int
    weights: _containers.ScalarMap[str, float]
    def __init__(self, method: _Optional[str] = ..., k: _Optional[int] = ..., prefetch: _Optional[int] = ..., weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RetrieverScores(_message.Message):
    __slots__ = ("scores",)
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.ScalarMap[str, float]
    def __init__(self, scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "batches", "include_metadata", "include_vectors", "explain", "packed_int_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    PACKED_INT_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    batches: _containers.RepeatedCompositeFieldContainer[QueryBatch]
    include_metadata: bool
    include_vectors: bool
    explain: bool
    packed_int_ids: bool
    def __init__(self, collection: _Optional[str] = ..., batches: _Optional[_Iterable[_Union[QueryBatch, _Mapping]]] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ..., explain: _Optional[bool] = ..., packed_int_ids: _Optional[bool] = ...) -> None: ...

class QueryHits(_message.Message):
    __slots__ = ("ids", "distances", "scores", "metadata", "vectors", "plan", "retrievers", "int_ids")
    IDS_FIELD_NUMBER: _ClassVar[int]
    DISTANCES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    RETRIEVERS_FIELD_NUMBER: _ClassVar[int]
    INT_IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    distances: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    metadata: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    vectors: _types_pb2.Vectors
    plan: _containers.RepeatedCompositeFieldContainer[_types_pb2.Metadata]
    retrievers: _containers.RepeatedCompositeFieldContainer[RetrieverScores]
    int_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., distances: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ..., metadata: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., plan: _Optional[_Iterable[_Union[_types_pb2.Metadata, _Mapping]]] = ..., retrievers: _Optional[_Iterable[_Union[RetrieverScores, _Mapping]]] = ..., int_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "grouped")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    GROUPED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryHits]
    grouped: _containers.RepeatedCompositeFieldContainer[GroupedHits]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryHits, _Mapping]]] = ..., grouped: _Optional[_Iterable[_Union[GroupedHits, _Mapping]]] = ...) -> None: ...

class HitGroup(_message.Message):
    __slots__ = ("value", "hits")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    value: _types_pb2.Value
    hits: QueryHits
    def __init__(self, value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., hits: _Optional[_Union[QueryHits, _Mapping]] = ...) -> None: ...

class GroupedHits(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[HitGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[HitGroup, _Mapping]]] = ...) -> None: ...

class RangeSearchRequest(_message.Message):
    __slots__ = ("collection", "vectors", "radius", "filter", "limit", "params", "include_metadata", "include_vectors")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vectors: _types_pb2.Vectors
    radius: float
    filter: _types_pb2.Filter
    limit: int
    params: _containers.MessageMap[str, _types_pb2.Value]
    include_metadata: bool
    include_vectors: bool
    def __init__(self, collection: _Optional[str] = ..., vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., radius: _Optional[float] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., limit: _Optional[int] = ..., params: _Optional[_Mapping[str, _types_pb2.Value]] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("collection", "positive_ids", "positive_vectors", "negative_ids", "negative_vectors", "k", "filter", "params", "include_metadata", "include_vectors", "score_threshold")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_IDS_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_IDS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    positive_ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    positive_vectors: _types_pb2.Vectors
    negative_ids: _containers.RepeatedCompositeFieldContainer[_types_pb2.PointId]
    negative_vectors: _types_pb2.Vectors
    k: int
    filter: _types_pb2.Filter
    params: _containers.MessageMap[str, _types_pb2.Value]
    include_metadata: bool
    include_vectors: bool
    score_threshold: float
    def __init__(self, collection: _Optional[str] = ..., positive_ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., positive_vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., negative_ids: _Optional[_Iterable[_Union[_types_pb2.PointId, _Mapping]]] = ..., negative_vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., params: _Optional[_Mapping[str, _types_pb2.Value]] = ..., include_metadata: _Optional[bool] = ..., include_vectors: _Optional[bool] = ..., score_threshold: _Optional[float] = ...) -> None: ...
