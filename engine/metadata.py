"""Columnar metadata: one typed column per field, so filters run as numpy operations and a
payload dict is built only for the rows a call returns.

Per field, a row holds a ``kind`` (missing, null, false, true, float, int, string, list,
complex, big int) and its value: numbers in a float64 array, strings as codes into the column's
vocabulary. Lists of scalars are stored through offsets in the same encoding
(``engine.list_column``), so filters over them stay numpy operations. Nested objects, lists
holding objects, lists or big ints (``complex``), and ints beyond float64's exact range (their
float is kept for range filters), are kept as Python values for the few rows that have them,
and matched row by row (equality on a list field matches any element).
Each row's key order is a code into a table of key tuples (``shapes``), so a payload
comes back with its keys in the order they were written.

A store is growable in memory (the growing segment, a merge's output) or read-only over
memory-mapped arrays (a sealed segment opened from disk): :meth:`MetadataStore.to_arrays`
and :meth:`MetadataStore.from_arrays` convert, with no per-row Python object on the way.
Deleted rows keep their values: every reader masks rows with the segment's live bitmap,
and a merge copies live rows only.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError
from .list_column import ListColumn, scalar_list_kinds
from .metadata_kinds import BIG_INT, COMPLEX, EXACT_FLOAT_INT, FALSE, FLOAT, INT, LIST, MISSING, NULL, STR, TRUE
from .small_arrays import all_are, all_same

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
    if type(meta) is dict and depth <= MAX_NESTING and _flat_and_valid(meta):
        return dict(sorted(meta.items()))
    if not isinstance(meta, Mapping):
        raise InvalidArgumentError(f"{where} must be a dict of field -> value, got {type(meta).__name__}")
    _check_depth(depth, where)
    out = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            raise InvalidArgumentError(f"{where}: field names must be non-empty strings not starting with '$', got {shorten(key)}")
        out[key] = _check_value(value, f"{where}.{key}", depth)
    return dict(sorted(out.items()))


def _flat_and_valid(meta: dict) -> bool:
    """The common payload, decided without building a path string per value: valid names and only
    str / bool / None / int64 / finite float values (anything else takes the full check and its messages).
    9.6 µs -> ~2 µs for three fields; the SDK checks a streamed upsert whole before sending (issue 27)."""
    for key, value in meta.items():
        if type(key) is not str or not key or key[0] == "$":
            return False
        kind = type(value)
        if kind is str or kind is bool or value is None:
            continue
        if kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                return False
        elif kind is not float or not math.isfinite(value):
            return False
    return True


def is_plain_payload(meta: Any) -> bool:
    """Whether ``check_metadata`` accepts ``meta`` as it is, up to key order (a flat dict of valid names and
    plain values), decided without copying it: the SDK's check of a whole upsert before it streams (issue 27)."""
    return type(meta) is dict and _flat_and_valid(meta)


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
    """Typed arrays for one field across the rows of a store (``capacity`` rows allocated)."""

    def __init__(self, capacity: int) -> None:
        self.kind = np.zeros(capacity, np.int8)
        self.num = np.full(capacity, np.nan)
        self.str_code = np.full(capacity, -1, np.int32)
        self.vocab: list[str] = []
        self.vocab_index: dict[str, int] = {}
        #: Rows holding a dict or a list of non-scalars (COMPLEX) or a big int (BIG_INT): their exact value.
        self.complex_rows: dict[int, Any] = {}
        self.big_ints: dict[int, int] = {}
        #: Rows holding a list of scalars (LIST), through offsets; None until one does.
        self.lists: ListColumn | None = None

    def grow(self, capacity: int) -> None:
        for name, fill in (("kind", MISSING), ("num", np.nan), ("str_code", -1)):
            old = getattr(self, name)
            new = np.full(capacity, fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def set(self, row: int, value: Any) -> None:
        if value is None:
            self.kind[row] = NULL
        elif isinstance(value, bool):
            self.kind[row] = TRUE if value else FALSE
        elif isinstance(value, int):
            self.num[row] = float(value)
            if abs(value) > EXACT_FLOAT_INT:
                self.kind[row] = BIG_INT
                self.big_ints[row] = value
            else:
                self.kind[row] = INT
        elif isinstance(value, float):
            self.num[row] = value
            self.kind[row] = FLOAT
        elif isinstance(value, str):
            self.str_code[row] = self._code(value)
            self.kind[row] = STR
        else:
            kinds = scalar_list_kinds(value) if isinstance(value, list) else None
            if kinds is None:
                self.kind[row] = COMPLEX
                self.complex_rows[row] = value
                return
            self._list_part().append(row, value, kinds, self._code)
            self.kind[row] = LIST

    def values(self, rows: np.ndarray) -> list[Any]:
        """The stored values at ``rows`` as they were written (None where the field is missing)."""
        kinds = self.kind[rows]
        first = int(kinds[0]) if kinds.size else MISSING
        if first in (INT, FLOAT, STR) and all_are(kinds, first):  # the common case: one kind, no per-row test
            if first == STR:
                vocab = self.vocab
                return [vocab[c] for c in self.str_code[rows].tolist()]
            nums = self.num[rows]
            return (nums.astype(np.int64) if first == INT else nums).tolist()
        lists = iter(self._lists_at(rows[kinds == LIST]))
        return [next(lists) if k == LIST else self._value(int(r), int(k))
                for r, k in zip(rows.tolist(), kinds.tolist())]

    def _lists_at(self, rows: np.ndarray) -> list[list[Any]]:
        if not rows.size:
            return []
        _, positions = self.lists.positions(rows)
        return self.lists.values(positions, self.vocab)

    def _value(self, row: int, kind: int) -> Any:
        if kind == INT:
            return int(self.num[row])
        if kind == FLOAT:
            return float(self.num[row])
        if kind == STR:
            return self.vocab[self.str_code[row]]
        if kind in (TRUE, FALSE):
            return kind == TRUE
        if kind == BIG_INT:
            return self.big_ints[row]
        if kind == COMPLEX:  # a copy: callers may change what they get
            return copy.deepcopy(self.complex_rows[row])
        return None

    def string_lut(self, predicate) -> np.ndarray:
        """Boolean lookup table over the vocabulary (+1 slot for 'no string', code -1)."""
        lut = np.zeros(len(self.vocab) + 1, bool)
        if self.vocab:
            lut[:-1] = predicate(np.asarray(self.vocab, dtype=object))
        return lut

    def extend_from(self, src: "Column", start: int, m: int) -> None:
        """Copy ``src``'s rows ``0..m-1`` into rows ``start..start+m-1`` (string codes renumbered)."""
        self.kind[start:start + m], self.num[start:start + m] = src.kind[:m], src.num[:m]
        codes = np.array([self._code(v) for v in src.vocab] + [-1], np.int32)  # code -1 stays -1
        self.str_code[start:start + m] = codes[src.str_code[:m]]
        self.complex_rows.update({start + r: v for r, v in src.complex_rows.items() if r < m})
        self.big_ints.update({start + r: v for r, v in src.big_ints.items() if r < m})
        if src.lists is not None:
            held = src.lists.rows[: src.lists.m]
            positions = np.arange(int(np.searchsorted(held, m)))
            self._list_part().append_from(src.lists, positions, held[positions] + start, codes)

    def _list_part(self) -> ListColumn:
        if self.lists is None:
            self.lists = ListColumn()
        return self.lists

    def _code(self, value: str) -> int:
        code = self.vocab_index.get(value)
        if code is None:
            code = self.vocab_index[value] = len(self.vocab)
            self.vocab.append(value)
        return code

    def take(self, rows: np.ndarray, capacity: int) -> "Column":
        """A growable column holding ``rows`` of this one as rows ``0..len(rows)-1``."""
        out = Column(capacity)
        m = rows.size
        out.kind[:m], out.num[:m], out.str_code[:m] = self.kind[rows], self.num[rows], self.str_code[rows]
        out.vocab, out.vocab_index = list(self.vocab), dict(self.vocab_index)
        for sparse, target in ((self.complex_rows, out.complex_rows), (self.big_ints, out.big_ints)):
            if sparse:
                at = {int(r): i for i, r in enumerate(rows.tolist()) if r in sparse}
                target.update({i: sparse[r] for r, i in at.items()})
        if self.lists is not None:
            hit, positions = self.lists.positions(rows)
            if positions.size:
                out._list_part().append_from(self.lists, positions, np.flatnonzero(hit), None)
        return out


class MetadataStore:
    """Metadata of rows ``0..n-1`` of one segment (see the module docstring)."""

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {}
        #: Key order of each row: a code into ``shapes`` (the tuples of keys seen so far).
        self.shape = np.zeros(0, np.int32)
        self.shapes: list[tuple[str, ...]] = [()]
        self._shape_index: dict[tuple[str, ...], int] = {(): 0}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, payloads: list[dict[str, Any]]) -> None:
        start = self._n
        self._reserve(start + len(payloads))
        capacity = self.shape.shape[0]
        for row, payload in enumerate(payloads, start):
            self.shape[row] = self._shape_code(tuple(payload))
            for key, value in payload.items():
                col = self.columns.get(key)
                if col is None:
                    col = self.columns[key] = Column(capacity)
                col.set(row, value)
        self._n += len(payloads)

    def extend(self, other: "MetadataStore") -> None:
        """Append ``other``'s rows (a merge joining segments): numpy copies with the string
        codes and key orders renumbered into this store's tables, no per-row Python object."""
        start, m = self._n, len(other)
        self._reserve(start + m)
        capacity = self.shape.shape[0]
        shape_map = np.array([self._shape_code(keys) for keys in other.shapes], np.int32)
        self.shape[start:start + m] = shape_map[other.shape[:m]]
        for key, src in other.columns.items():
            col = self.columns.get(key)
            if col is None:
                col = self.columns[key] = Column(capacity)
            col.extend_from(src, start, m)
        self._n += m

    def _shape_code(self, keys: tuple[str, ...]) -> int:
        code = self._shape_index.get(keys)
        if code is None:
            code = self._shape_index[keys] = len(self.shapes)
            self.shapes.append(keys)
        return code

    def column(self, field: str) -> Column | None:
        return self.columns.get(field)

    def payloads(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """New dicts of these rows' payloads, keys in their written order (a gather per field)."""
        rows = np.asarray(rows, np.int64)
        shape = self.shape[rows]
        if all_same(shape) and shape.size:  # the common case: every hit has the same keys
            out: list[dict[str, Any]] = [{} for _ in range(rows.size)]
            for key in self.shapes[int(shape[0])]:  # column by column: no dict() call per row
                for payload, value in zip(out, self.columns[key].values(rows)):
                    payload[key] = value
            return out
        shapes = [self.shapes[c] for c in shape.tolist()]
        fields = {key for keys in set(shapes) for key in keys}
        values = {key: self.columns[key].values(rows) for key in fields}
        return [{key: values[key][i] for key in keys} for i, keys in enumerate(shapes)]

    def take(self, rows: np.ndarray) -> "MetadataStore":
        """A growable store holding ``rows`` of this one as rows ``0..len(rows)-1`` (a merge's copy:
        numpy gathers, no per-row Python object)."""
        rows = np.asarray(rows, np.int64)
        out = MetadataStore()
        capacity = max(int(rows.size), 64)
        out.shape = np.zeros(capacity, np.int32)
        out.shape[: rows.size] = self.shape[rows]
        out.shapes, out._shape_index = list(self.shapes), dict(self._shape_index)
        used = np.unique(out.shape[: rows.size])
        fields = {key for code in used.tolist() for key in self.shapes[code]}
        out.columns = {key: col.take(rows, capacity) for key, col in self.columns.items() if key in fields}
        out._n = int(rows.size)
        return out

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON-able metadata that describe rows ``0..n-1`` (for a segment file)."""
        n = self._n
        arrays = {"shape": self.shape[:n]}
        fields = []
        for i, (key, col) in enumerate(self.columns.items()):
            arrays[f"{i}.kind"], arrays[f"{i}.num"], arrays[f"{i}.str"] = col.kind[:n], col.num[:n], col.str_code[:n]
            if col.lists is not None:
                arrays.update({f"{i}.l.{k}": a for k, a in col.lists.to_arrays(n).items()})
            fields.append({"name": key, "vocab": col.vocab,
                           "complex": [[r, v] for r, v in col.complex_rows.items() if r < n],
                           "big": [[r, str(v)] for r, v in col.big_ints.items() if r < n]})
        return arrays, {"fields": fields, "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "MetadataStore":
        """A read-only store over stored (memory-mapped) arrays."""
        out = cls()
        out.shape = arrays["shape"]
        out._n = int(out.shape.shape[0])
        out.shapes = [tuple(s) for s in meta["shapes"]]
        out._shape_index = {s: i for i, s in enumerate(out.shapes)}
        for i, field in enumerate(meta["fields"]):
            col = Column(0)
            col.kind, col.num, col.str_code = arrays[f"{i}.kind"], arrays[f"{i}.num"], arrays[f"{i}.str"]
            col.vocab = list(field["vocab"])
            col.vocab_index = {v: j for j, v in enumerate(col.vocab)}
            col.complex_rows = {int(r): v for r, v in field["complex"]}
            col.big_ints = {int(r): int(v) for r, v in field["big"]}
            if f"{i}.l.rows" in arrays:
                col.lists = ListColumn.from_arrays({k: arrays[f"{i}.l.{k}"] for k in ListColumn.ARRAYS
                                                    if f"{i}.l.{k}" in arrays})
            out.columns[field["name"]] = col
        return out

    def _reserve(self, n: int) -> None:
        capacity = self.shape.shape[0]
        if n <= capacity:
            return
        capacity = max(n, 2 * capacity, 64)
        shape = np.zeros(capacity, np.int32)
        shape[: self._n] = self.shape[: self._n]
        self.shape = shape
        for col in self.columns.values():
            col.grow(capacity)
