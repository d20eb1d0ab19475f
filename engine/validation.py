"""Input checks shared by every public entry point.

They run before anything is changed, so a rejected call leaves no trace.
Messages name the argument, what was expected and what was received.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .echo import shorten
from .errors import DimensionMismatchError, DuplicateIdError, InvalidArgumentError, InvalidVectorError
from .kernels.rows_numba import checked_rows

#: Largest k a search may ask for, unless the environment variable ``SHOAL_MAX_K`` says
#: otherwise (``shoal serve --max-k`` sets it). Results are ``nq x k`` distances and ids
#: (12 bytes each): k = 2**31 allocated 8-16 GiB and answered INTERNAL (issue 15). 16384
#: is FAISS's largest k on the GPU (2048) times 8, and far beyond any top-k a client reads.
DEFAULT_MAX_K = 16384
MAX_K_ENV = "SHOAL_MAX_K"


def as_matrix(x: Any, dim: int | None, name: str = "vectors", allow_empty: bool = False) -> np.ndarray:
    """Convert to a C-contiguous float32 ``(n, dim)`` matrix; 1-D input is one row."""
    arr = _float_matrix(x, dim, name, allow_empty)
    if arr.size and not np.isfinite(arr).all():
        raise non_finite(int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0]), name)
    return np.ascontiguousarray(arr)


def as_queries(x: Any, dim: int, normalize: bool, name: str = "queries") -> np.ndarray:
    """``as_matrix`` and the metric's preparation (``normalize`` for cosine) in one kernel pass:
    a new float32 ``(n, dim)`` matrix the search kernels take as is."""
    arr = _float_matrix(x, dim, name, allow_empty=False)
    out = np.empty(arr.shape, np.float32)
    bad = checked_rows(arr, normalize, out)
    if bad >= 0:
        raise non_finite(bad, name)
    return out


def _float_matrix(x: Any, dim: int | None, name: str, allow_empty: bool) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(f"{name} must be numeric (float32-convertible): {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DimensionMismatchError(f"{name} must be 1-D or 2-D, got an array of shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise InvalidArgumentError(f"{name} is an empty batch; pass at least one vector")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(f"{name} have dimension {arr.shape[1]}, expected {dim}")
    return arr


def non_finite(row: int, name: str) -> InvalidVectorError:
    """The error for a batch whose row ``row`` holds a NaN or infinity."""
    return InvalidVectorError(f"{name} contain NaN or infinity (first at row {row}); only finite values are allowed")


def max_k() -> int:
    """The largest k a search accepts: ``$SHOAL_MAX_K`` or :data:`DEFAULT_MAX_K` (read per call, so
    a server sets it once at start-up and every entry point agrees)."""
    raw = os.environ.get(MAX_K_ENV)
    if raw is None:
        return DEFAULT_MAX_K
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidArgumentError(f"environment variable {MAX_K_ENV} must be a positive integer, got {shorten(raw)}")
    return value


def check_k(k: Any) -> int:
    """k must be an integer in ``[1, max_k()]``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidArgumentError(f"k must be a positive integer, got {shorten(k)}")
    limit = max_k()
    if k > limit:
        raise InvalidArgumentError(f"k={k} exceeds the maximum k of {limit}; ask for at most {limit} results "
                                   f"(the limit is set by {MAX_K_ENV} / shoal serve --max-k)")
    return int(k)


def as_labels(ids: Any, n: int | None = None, name: str = "ids") -> np.ndarray:
    """Integer labels for the index layer: int64, 1-D, unique, length n."""
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be integers: {exc}") from None
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise InvalidArgumentError(f"{name} must be a 1-D sequence of integers, got dtype {arr.dtype} shape {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    if n is not None and arr.shape[0] != n:
        raise InvalidArgumentError(f"got {arr.shape[0]} {name} for {n} vectors; lengths must match")
    if arr.size and (arr < 0).any():
        raise InvalidArgumentError(f"{name} must be non-negative")
    if np.unique(arr).size != arr.size:
        raise DuplicateIdError(f"{name} contain duplicates within one batch")
    return arr
