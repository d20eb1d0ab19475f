from shoal.rpc.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AskRequest(_message.Message):
    __slots__ = ("question", "collection", "k", "filter", "min_score", "mmr", "mmr_lambda", "max_new_tokens", "temperature", "no_cache")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MMR_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    question: str
    collection: str
    k: int
    filter: _types_pb2.Filter
    min_score: float
    mmr: bool
    mmr_lambda: float
    max_new_tokens: int
    temperature: float
    no_cache: bool
    def __init__(self, question: _Optional[str] = ..., collection: _Optional[str] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., min_score: _Optional[float] = ..., mmr: _Optional[bool] = ..., mmr_lambda: _Optional[float] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., no_cache: _Optional[bool] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("number", "source", "chunk", "score", "text", "title")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    number: int
    source: str
    chunk: int
    score: float
    text: str
    title: str
    def __init__(self, number: _Optional[int] = ..., source: _Optional[str] = ..., chunk: _Optional[int] = ..., score: _Optional[float] = ..., text: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class AskAnswer(_message.Message):
    __slots__ = ("text", "citations", "timings", "cached", "finish_reason")
    class TimingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    timings: _containers.ScalarMap[str, float]
    cached: bool
    finish_reason: str
    def __init__(self, text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., timings: _Optional[_Mapping[str, float]] = ..., cached: _Optional[bool] = ..., finish_reason: _Optional[str] = ...) -> None: ...

class AskEvent(_message.Message):
    __slots__ = ("token", "answer")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    token: str
    answer: AskAnswer
    def __init__(self, token: _Optional[str] = ..., answer: _Optional[_Union[AskAnswer, _Mapping]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("vectors", "embedder")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    vectors: _types_pb2.Vectors
    embedder: str
    def __init__(self, vectors: _Optional[_Union[_types_pb2.Vectors, _Mapping]] = ..., embedder: _Optional[str] = ...) -> None: ...
