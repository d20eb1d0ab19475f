"""One exception hierarchy for every layer.

Each class carries the gRPC status code it maps to, so the service layer
translates errors in exactly one place (``rpc``) without a lookup table that
could drift from this file.
"""
from __future__ import annotations


class ShoalError(Exception):
    """Base class of every error Shoal raises on purpose."""

    grpc_code = "INTERNAL"


class InvalidArgumentError(ShoalError, ValueError):
    """An argument has the wrong type, shape, range or value."""

    grpc_code = "INVALID_ARGUMENT"


class DimensionMismatchError(InvalidArgumentError):
    """Vectors do not have the collection's / index's dimension."""


class InvalidVectorError(InvalidArgumentError):
    """Vectors contain NaN or infinity, or cannot be converted to float32."""


class DuplicateIdError(InvalidArgumentError):
    """The same id appears twice in one batch."""


class FilterError(InvalidArgumentError):
    """A metadata filter is malformed: unknown operator or wrong operand type."""


class InvalidSpecError(InvalidArgumentError):
    """An index spec string or option set cannot be built."""


class NotFoundError(ShoalError, KeyError):
    """Something named by the caller does not exist."""

    grpc_code = "NOT_FOUND"

    def __str__(self) -> str:  # KeyError would print repr(message)
        return str(self.args[0]) if self.args else ""


class CollectionNotFoundError(NotFoundError):
    """No collection with that name."""


class IdNotFoundError(NotFoundError):
    """One or more ids are not stored in the collection."""


class PayloadIndexNotFoundError(NotFoundError):
    """``drop_payload_index`` of a field that has no payload index."""


class AlreadyExistsError(ShoalError):
    """Something with that name already exists."""

    grpc_code = "ALREADY_EXISTS"


class CollectionExistsError(AlreadyExistsError):
    """A collection with that name already exists."""


class CollectionConfigMismatchError(CollectionExistsError):
    """``get_or_create_collection`` found the collection, but created with another dim, metric or index."""


class FailedPreconditionError(ShoalError):
    """The call is valid but the object is not in a state to serve it."""

    grpc_code = "FAILED_PRECONDITION"


class ClosedError(FailedPreconditionError):
    """The collection (or its database) was closed; open the database again to use it."""


class NotTrainedError(FailedPreconditionError):
    """The index must be trained before vectors can be added or searched."""


class ReadOnlyError(FailedPreconditionError):
    """A write was attempted on a database opened read-only."""


class StorageError(ShoalError, OSError):
    """Data files cannot be read or written."""

    grpc_code = "INTERNAL"


class CorruptionError(StorageError):
    """A data file fails its checksum or structure checks."""

    grpc_code = "DATA_LOSS"


class FormatVersionError(StorageError):
    """A data file has an unknown format version or is of the wrong kind."""

    grpc_code = "FAILED_PRECONDITION"


class LockedError(StorageError):
    """Another process holds the write lock on this data directory."""

    grpc_code = "FAILED_PRECONDITION"


class ResourceExhaustedError(ShoalError):
    """A request exceeds a configured size, memory or rate limit."""

    grpc_code = "RESOURCE_EXHAUSTED"


class DiskFullError(StorageError, ResourceExhaustedError):
    """A write failed because the file system is full or over quota (ENOSPC / EDQUOT).

    Nothing of the failed call was applied; retry once space is freed.
    """

    grpc_code = "RESOURCE_EXHAUSTED"


class AuthenticationError(ShoalError):
    """The server requires an API key and the call had none or a wrong one."""

    grpc_code = "UNAUTHENTICATED"


class UnavailableError(ShoalError, ConnectionError):
    """The server cannot be reached or is shutting down; idempotent calls may be retried."""

    grpc_code = "UNAVAILABLE"


class ShardUnavailableError(UnavailableError):
    """No replica of a cluster shard can serve the call now (all dead or still catching up); the
    message names the collection and shard. Retry once a replica is back (``RayDatabase.repair``)."""


class CancelledError(ShoalError):
    """The call was cancelled before it finished: by the caller, or by a server shutting down
    (a call that reaches a stopping server before its handler starts)."""

    grpc_code = "CANCELLED"


class DeadlineExceededError(ShoalError, TimeoutError):
    """A remote call did not finish within its timeout."""

    grpc_code = "DEADLINE_EXCEEDED"


class UnimplementedError(ShoalError, NotImplementedError):
    """The operation is not available in this build or configuration of the server."""

    grpc_code = "UNIMPLEMENTED"
