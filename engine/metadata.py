"""Columnar metadata: one typed column per field, so filters run as numpy operations.

Each row's payload is also kept whole (``rows``) for ``get`` and search results.
Scalar values go to typed arrays (numbers, strings as dictionary codes,
booleans, nulls); lists and nested objects are kept only in ``rows`` and
matched row by row (equality on a list field matches any element).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError

JSONScalar = (str, int, float, bool, type(None))
#: Deepest nesting of dicts and lists inside one payload (the payload itself is level 1). It keeps
#: every accepted payload well inside protobuf's 100-message decode limit over gRPC (a dict level
#: is 3 messages there, a list level 2) and Python's recursion limit in JSON (WAL) encoding.
MAX_NESTING = 16
#: Integers must fit in signed 64 bits (ids and metadata values alike): the wire carries int64, so
#: this is the rule both embedded and served apply, and nothing accepted in one is refused by the other.
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def check_int64(value: int, where: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgumentError(f"{where}: integer {shorten(value)} does not fit in 64 bits "
                                   f"(the range is -2**63 .. 2**63-1, embedded and served)")
    return value


def check_metadata(meta: Any, where: str = "metadata", depth: int = 1) -> dict[str, Any]:
    """Validate a JSON-like payload (string keys; finite numbers; 64-bit ints; at most MAX_NESTING deep)
    and return a plain dict with its keys in sorted order, at every level.

    Sorted keys are the one key order both sides can promise: protobuf maps carry no order, so a
    payload read back embedded or over gRPC has the same keys in the same (sorted) order.
    """
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidArgumentError(f"{where} must be a dict of field -> value, got {type(meta).__name__}")
    _check_depth(depth, where)
    out = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            raise InvalidArgumentError(f"{where}: field names must be non-empty strings not starting with '$', got {shorten(key)}")
        out[key] = _check_value(value, f"{where}.{key}", depth)
    return dict(sorted(out.items()))


def _check_depth(depth: int, where: str) -> None:
    if depth > MAX_NESTING:
        raise InvalidArgumentError(f"{shorten(where, 200)}: dicts and lists nest deeper than {MAX_NESTING} levels, "
                                   "the most a payload may have")


def _check_value(value: Any, where: str, depth: int) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{where}: numbers must be finite, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int64(value, where)
    if isinstance(value, JSONScalar):
        return value
    if isinstance(value, (list, tuple)):
        _check_depth(depth + 1, where)
        return [_check_value(v, f"{where}[]", depth + 1) for v in value]
    if isinstance(value, Mapping):
        return check_metadata(value, where, depth + 1)
    raise InvalidArgumentError(f"{where}: unsupported type {type(value).__name__}; use str, int, float, bool, None, list or dict")


class Column:
    """Typed arrays for one field across all rows of a store."""

    def __init__(self, capacity: int) -> None:
        self.num = np.full(capacity, np.nan)
        self.is_num = np.zeros(capacity, bool)
        self.str_code = np.full(capacity, -1, np.int32)
        self.vocab: list[str] = []
        self.vocab_index: dict[str, int] = {}
        self.boolean = np.full(capacity, -1, np.int8)
        self.is_null = np.zeros(capacity, bool)
        self.present = np.zeros(capacity, bool)
        self.complex_rows: dict[int, Any] = {}

    def grow(self, capacity: int) -> None:
        for name, fill in (("num", np.nan), ("is_num", False), ("str_code", -1), ("boolean", -1),
                           ("is_null", False), ("present", False)):
            old = getattr(self, name)
            new = np.full(capacity, fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def clear(self, row: int) -> None:
        self.num[row] = np.nan
        self.is_num[row] = False
        self.str_code[row] = -1
        self.boolean[row] = -1
        self.is_null[row] = False
        self.present[row] = False
        self.complex_rows.pop(row, None)

    def set(self, row: int, value: Any) -> None:
        self.present[row] = True
        if value is None:
            self.is_null[row] = True
        elif isinstance(value, bool):
            self.boolean[row] = int(value)
        elif isinstance(value, (int, float)):
            self.num[row] = float(value)
            self.is_num[row] = True
        elif isinstance(value, str):
            code = self.vocab_index.get(value)
            if code is None:
                code = self.vocab_index[value] = len(self.vocab)
                self.vocab.append(value)
            self.str_code[row] = code
        else:
            self.complex_rows[row] = value

    def string_lut(self, predicate) -> np.ndarray:
        """Boolean lookup table over the vocabulary (+1 slot for 'no string', code -1)."""
        lut = np.zeros(len(self.vocab) + 1, bool)
        if self.vocab:
            lut[:-1] = predicate(np.asarray(self.vocab, dtype=object))
        return lut


class MetadataStore:
    """Metadata of rows ``0..n-1`` of one segment."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.columns: dict[str, Column] = {}
        self._capacity = 0

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, payloads: list[dict[str, Any]]) -> None:
        start = len(self.rows)
        self._reserve(start + len(payloads))
        for offset, payload in enumerate(payloads):
            row = start + offset
            self.rows.append(payload)
            for key, value in payload.items():
                col = self.columns.get(key)
                if col is None:
                    col = self.columns[key] = Column(self._capacity)
                col.set(row, value)

    def clear_rows(self, rows: np.ndarray) -> None:
        """Forget payloads of deleted rows (they can no longer match or be returned)."""
        for row in np.asarray(rows).tolist():
            for key in self.rows[row]:
                self.columns[key].clear(row)
            self.rows[row] = {}

    def column(self, field: str) -> Column | None:
        return self.columns.get(field)

    def _reserve(self, n: int) -> None:
        if n <= self._capacity:
            return
        self._capacity = max(n, 2 * self._capacity, 64)
        for col in self.columns.values():
            col.grow(self._capacity)
