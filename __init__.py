"""Shoal: a vector database engine for Python, embedded (``shoal.Database``) or served over gRPC.

    import shoal
    db = shoal.Database()
    col = db.create_collection("docs", dim=384, metric="cosine", index="hnsw")
    col.upsert(ids, vectors, metadata)
    col.search(query, k=10, filter={"lang": "en"})
"""
from .engine import Collection, Database, GetResult, Hit, QueryResult
from .engine.results import Group, Record, ScrollPage
from .engine.errors import (AlreadyExistsError, CollectionConfigMismatchError, CollectionExistsError, CollectionNotFoundError, CorruptionError,
                            DimensionMismatchError, DuplicateIdError, FilterError, FormatVersionError,
                            IdNotFoundError, InvalidArgumentError, InvalidSpecError, InvalidVectorError,
                            NotFoundError, ShoalError, StorageError)

__version__ = "0.1.0"

__all__ = [
    "Database", "Collection", "QueryResult", "GetResult", "Hit", "__version__",
    "ShoalError", "InvalidArgumentError", "DimensionMismatchError", "InvalidVectorError", "DuplicateIdError",
    "FilterError", "InvalidSpecError", "NotFoundError", "CollectionNotFoundError", "IdNotFoundError",
    "AlreadyExistsError", "CollectionExistsError", "StorageError", "CorruptionError", "FormatVersionError",
    "CollectionConfigMismatchError", "Record", "ScrollPage", "Group", "Client", "AsyncClient",
]


def __getattr__(name: str):
    """``shoal.Client`` / ``shoal.AsyncClient`` (gRPC SDK) are imported on first use, so ``import shoal`` does not load grpc."""
    if name == "Client":
        from .rpc.client import Client

        return Client
    if name == "AsyncClient":
        from .rpc.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")

