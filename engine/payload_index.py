"""Payload indexes: per sealed segment, the rows of each value of a declared field, so a
selective filter reads its matching rows instead of scanning the field's column.

Declared per collection, persisted in its manifest::

    create_collection(..., payload_indexes={"tag": "keyword", "year": "range"})

* ``keyword`` (string values): the rows of each distinct string, sorted by (vocabulary code,
  row), with offsets per code (CSR over the column's dictionary). Answers equality and ``$in``
  with strings, and string ranges (``$gt: "m"``) through the dictionary.
* ``range`` (numbers): the numeric rows sorted by value, with their values. Answers
  ``$gt $gte $lt $lte`` with numbers and equality / ``$in`` with numbers (ints and floats
  compare as float64, like the scan).
* ``bool``: the rows holding false and true. Answers equality and ``$in`` with booleans.
* Every kind also keeps the rows where the field is missing and those holding null (or a list
  holding null), so ``{f: None}``, ``$in`` with null (next to the kind's own operands) and
  ``$exists`` are answered from it, and the planner gets their counts.

Declared, not automatic: which fields are filtered on is the user's knowledge, an index costs
4 (keyword, bool) or 12 (range) bytes per row (plus 4 per row missing or null), and a filter answered by an index must not change its
answer when data changes a field's cardinality (Qdrant and Milvus also take them declared).
Top-level fields only (a nested path reads its rows from the parent's dict values).

List fields: a row whose value is a list of scalars (``engine.list_column``) matches equality
through any element, never a range, so each index keeps a second part for list elements, used for
equality and ``$in`` only: a row is in the list of every value it holds. What an index does not
hold it leaves to the evaluator: dicts and lists of dicts or lists are matched from the column's
few complex rows, and ``$ne`` / ``$nin`` / ``$not``, operands of another type than the kind's
and unindexed fields are scanned. In a
conjunction the child with the smallest estimate drives and the others are evaluated at its rows
only (``filters.And.index_rows``); a union needs every child indexed.

Life: the growing segment has none (it is scanned; at most ``flush_rows`` rows). An index is
built when a segment is sealed and for every segment a merge writes (rebuilt from the merged
columns: one sort per field, small next to the vector index the merge builds), stored in the
segment's rows file (arrays ``x.<i>.*``), memory-mapped on open; a segment stored without them
(written before they existed) builds them when opened. Deleted rows stay in the lists until the
optimizer rewrites the segment; ``Segment.match`` drops them with the live bitmap.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError
from .filters import _RANGE_OPS, sorted_unique
from .metadata import BIG_INT, FALSE, FLOAT, INT, MISSING, NULL, STR, TRUE, Column, MetadataStore

if TYPE_CHECKING:
    from .filters import Node
    from .segment import Segment

KINDS = ("keyword", "range", "bool")
#: A filter whose index estimate passes this fraction of a segment's rows is scanned instead:
#: gathering, sorting and masking that many rows costs more than one pass over the column.
#: Measured at 1M rows (``bench/payload_index_bench.py --crossover``, 2 shared cores, load ~25):
#: a numeric range costs 0.29 ms by scan, 0.25 ms through the index at 5 % of the rows and
#: 0.51 ms at 10 %; string equality scans cost ~1.2-1.6 ms, so strings cross later.
INDEX_MAX_FRACTION = 0.05


@dataclass(frozen=True)
class PayloadIndexConfig:
    """The fields a collection indexes and how (``{"tag": "keyword", "year": "range"}``)."""

    fields: tuple[tuple[str, str], ...]

    @classmethod
    def from_options(cls, value: Any) -> "PayloadIndexConfig | None":
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidArgumentError(f"payload_indexes must be a dict of field -> kind ({', '.join(KINDS)}), "
                                       f"got {shorten(value)}")
        fields = []
        for name, kind in value.items():
            if not isinstance(name, str) or not name or name.startswith("$") or "." in name:
                raise InvalidArgumentError(f"payload_indexes: {shorten(name)} is not an indexable field name "
                                           "(a non-empty top-level key, no '$' prefix, no '.': nested paths "
                                           "are not indexed)")
            if kind not in KINDS:
                raise InvalidArgumentError(f"payload_indexes[{name!r}] must be one of {', '.join(KINDS)}, "
                                           f"got {shorten(kind)}")
            fields.append((name, kind))
        return cls(tuple(sorted(fields))) if fields else None

    def to_options(self) -> dict[str, str]:
        return dict(self.fields)


class Spans:
    """Rows of a lookup: slices ``[starts[i], ends[i])`` of an index's row arrays. Slices of the
    scalar part are the rows of distinct values, so no row is in two of them; a list part's slices
    may share rows (a row holding two of the values), so its rows are made unique."""

    def __init__(self, rows: np.ndarray, starts: Any = (), ends: Any = (), row_sorted: bool = False,
                 distinct: bool = True) -> None:
        self._parts = [(rows, np.asarray(starts, np.int64), np.asarray(ends, np.int64))]
        #: Each slice is already in row order (keyword postings), so one slice needs no sort.
        self._row_sorted = row_sorted
        self._distinct = distinct

    def plus(self, other: "Spans | None") -> "Spans":
        """These rows and ``other``'s (a list part), which may overlap."""
        if other is None or not other.count:
            return self
        out = Spans(self._parts[0][0])
        out._parts, out._distinct = self._parts + other._parts, False
        return out

    @property
    def count(self) -> int:
        """Rows found (an upper bound once a list part overlaps)."""
        return int(sum((ends - starts).sum() for _, starts, ends in self._parts))

    def rows(self) -> np.ndarray:
        """The rows, sorted and unique (int64)."""
        if len(self._parts) == 1 and self._distinct:
            rows, starts, ends = self._parts[0]
            if starts.size == 1:
                out = rows[starts[0]:ends[0]].astype(np.int64)
                return out if self._row_sorted else np.sort(out)
            return np.sort(_gather(rows, starts, ends)).astype(np.int64)
        found = np.concatenate([_gather(*part) for part in self._parts])
        return sorted_unique(found).astype(np.int64)


def _gather(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The rows of every slice in one gather: start of its slice + offset within it."""
    lengths = ends - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    first = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return rows[first + np.arange(total)]


def _list_elements(col: Column | None, kinds: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(element indices, owner rows)`` of a column's list elements of these kinds."""
    lists = None if col is None else col.lists
    if lists is None or not lists.e:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    elements = np.flatnonzero(np.isin(lists.kind[: lists.e], kinds))
    return elements, lists.owners()[elements]


def _distinct_pairs(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(key, owner)`` pairs sorted by key then owner, each once (a list may repeat a value)."""
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    if keys.size > 1:
        keep = np.concatenate(([True], (keys[1:] != keys[:-1]) | (owners[1:] != owners[:-1])))
        keys, owners = keys[keep], owners[keep]
    return keys, owners


class _Absences:
    """Rows where the field is missing, and rows holding null (or a list holding null): every
    index keeps them, so ``{f: None}``, ``$in`` with null and ``$exists`` are answered from it
    (None: an index stored before they existed, which leaves those filters to the scan)."""

    def _set_absences(self, null_rows: np.ndarray | None, missing_rows: np.ndarray | None) -> None:
        self.null_rows, self.missing_rows = null_rows, missing_rows

    @staticmethod
    def absences(col: Column | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        if col is None:
            return np.zeros(0, np.int32), np.arange(n, dtype=np.int32)
        kind = col.kind[:n]
        _, in_lists = _list_elements(col, (NULL,))
        null = sorted_unique(np.concatenate((np.flatnonzero(kind == NULL), in_lists)))
        return null.astype(np.int32), np.flatnonzero(kind == MISSING).astype(np.int32)

    def null_or_missing(self) -> Spans | None:
        if self.null_rows is None:
            return None
        return Spans(self.null_rows, [0], [self.null_rows.size], True).plus(self.missing())

    def missing(self) -> Spans | None:
        return None if self.missing_rows is None else Spans(self.missing_rows, [0], [self.missing_rows.size], True)

    def absence_arrays(self) -> dict[str, np.ndarray]:
        return {} if self.null_rows is None else {"null_rows": self.null_rows, "missing_rows": self.missing_rows}


class _CodeIndex(_Absences):
    """Rows of each code of a field's values (CSR: ``rows[offsets[c]:offsets[c+1]]``, ascending),
    with a list part of the same shape for list elements."""

    ARRAYS = ("offsets", "rows", "list_offsets", "list_rows", "null_rows", "missing_rows")

    def __init__(self, offsets: np.ndarray, rows: np.ndarray, list_offsets: np.ndarray | None = None,
                 list_rows: np.ndarray | None = None, null_rows: np.ndarray | None = None,
                 missing_rows: np.ndarray | None = None) -> None:
        self.offsets, self.rows = offsets, rows
        self.list_offsets = np.zeros(1, np.int64) if list_offsets is None else list_offsets
        self.list_rows = np.zeros(0, np.int32) if list_rows is None else list_rows
        self._set_absences(null_rows, missing_rows)

    @classmethod
    def _from_codes(cls, codes: np.ndarray, rows: np.ndarray, list_codes: np.ndarray, list_rows: np.ndarray,
                    size: int, col: Column | None, n: int) -> "_CodeIndex":
        order = np.argsort(codes, kind="stable")  # stable: rows stay ascending within a code
        list_codes, list_rows = _distinct_pairs(list_codes, list_rows)
        return cls(_csr_offsets(codes, size), rows[order].astype(np.int32), _csr_offsets(list_codes, size),
                   list_rows.astype(np.int32), *cls.absences(col, n))

    def _spans(self, codes: np.ndarray, with_lists: bool) -> Spans:
        codes = codes[codes < self.offsets.size - 1]
        spans = Spans(self.rows, self.offsets[codes], self.offsets[codes + 1], row_sorted=True)
        if not with_lists or self.list_offsets.size == 1:
            return spans
        codes = codes[codes < self.list_offsets.size - 1]
        return spans.plus(Spans(self.list_rows, self.list_offsets[codes], self.list_offsets[codes + 1], True, False))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"offsets": self.offsets, "rows": self.rows, "list_offsets": self.list_offsets,
                "list_rows": self.list_rows, **self.absence_arrays()}


class KeywordIndex(_CodeIndex):
    """Rows of each string value, by vocabulary code (see the module docstring)."""

    KIND = "keyword"

    @classmethod
    def build(cls, col: Column | None, n: int) -> "KeywordIndex":
        if col is None:
            return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), None, None, *cls.absences(col, n))
        rows = np.flatnonzero(col.kind[:n] == STR)
        elements, owners = _list_elements(col, (STR,))
        list_codes = col.lists.str_code[elements] if elements.size else elements
        return cls._from_codes(col.str_code[rows], rows, list_codes, owners, len(col.vocab), col, n)

    def equal_values(self, col: Column | None, strings: set[str], numbers: list[float], bools: set[bool]) -> Spans | None:
        if numbers or bools:
            return None
        found = [] if col is None else [col.vocab_index.get(s) for s in strings]
        return self._spans(np.array([c for c in found if c is not None], np.int64), with_lists=True)

    def range(self, col: Column | None, bounds: list[tuple[str, Any]]) -> Spans:
        if col is None:
            return self._spans(np.zeros(0, np.int64), with_lists=False)

        def within(s: str) -> bool:
            return all(_RANGE_OPS[op](s, operand) for op, operand in bounds)

        lut = col.string_lut(lambda vocab: np.fromiter((within(s) for s in vocab), bool, len(vocab)))
        return self._spans(np.flatnonzero(lut[:-1]), with_lists=False)  # a list never matches a range


class BoolIndex(_CodeIndex):
    """Rows holding false (code 0) and true (code 1), as values or list elements: equality and
    ``$in`` with booleans (which never equal numbers)."""

    KIND = "bool"

    @classmethod
    def build(cls, col: Column | None, n: int) -> "BoolIndex":
        if col is None:
            return cls(np.zeros(3, np.int64), np.zeros(0, np.int32), None, None, *cls.absences(col, n))
        kind = col.kind[:n]
        rows = np.flatnonzero((kind == FALSE) | (kind == TRUE))
        elements, owners = _list_elements(col, (FALSE, TRUE))
        list_codes = (col.lists.kind[elements] == TRUE).astype(np.int64) if elements.size else elements
        return cls._from_codes((kind[rows] == TRUE).astype(np.int64), rows, list_codes, owners, 2, col, n)

    def equal_values(self, col: Column | None, strings: set[str], numbers: list[float], bools: set[bool]) -> Spans | None:
        if strings or numbers:
            return None
        return self._spans(np.array(sorted(int(b) for b in bools), np.int64), with_lists=True)


def _csr_offsets(codes: np.ndarray, vocab_size: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=vocab_size) if codes.size else np.zeros(vocab_size, np.int64)
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


class RangeIndex(_Absences):
    """Numeric rows sorted by value (see the module docstring)."""

    KIND = "range"
    ARRAYS = ("values", "rows", "list_values", "list_rows", "null_rows", "missing_rows")

    def __init__(self, values: np.ndarray, rows: np.ndarray, list_values: np.ndarray | None = None,
                 list_rows: np.ndarray | None = None, null_rows: np.ndarray | None = None,
                 missing_rows: np.ndarray | None = None) -> None:
        self.values, self.rows = values, rows
        #: The list part (equality only): numeric list elements sorted by value, with their rows.
        self.list_values = np.zeros(0) if list_values is None else list_values
        self.list_rows = np.zeros(0, np.int32) if list_rows is None else list_rows
        self._set_absences(null_rows, missing_rows)

    @classmethod
    def build(cls, col: Column | None, n: int) -> "RangeIndex":
        if col is None:
            return cls(np.zeros(0), np.zeros(0, np.int32), None, None, *cls.absences(col, n))
        kind = col.kind[:n]
        rows = np.flatnonzero((kind == INT) | (kind == FLOAT) | (kind == BIG_INT))
        values = col.num[rows]
        order = np.argsort(values, kind="stable")
        elements, owners = _list_elements(col, (INT, FLOAT))
        list_values, list_rows = _distinct_pairs(col.lists.num[elements] if elements.size else np.zeros(0), owners)
        return cls(np.ascontiguousarray(values[order]), rows[order].astype(np.int32),
                   np.ascontiguousarray(list_values), list_rows.astype(np.int32), *cls.absences(col, n))

    def equal_values(self, col: Column | None, strings: set[str], numbers: list[float], bools: set[bool]) -> Spans | None:
        if strings or bools:
            return None
        want = np.unique(np.asarray(numbers, np.float64))
        spans = Spans(self.rows, np.searchsorted(self.values, want, "left"), np.searchsorted(self.values, want, "right"))
        if not self.list_values.size:
            return spans
        return spans.plus(Spans(self.list_rows, np.searchsorted(self.list_values, want, "left"),
                                np.searchsorted(self.list_values, want, "right"), True, False))

    def range(self, bounds: list[tuple[str, Any]]) -> Spans:
        """The one span of values within every bound (``$gte a`` and ``$lt b`` together: a between)."""
        lo, hi = 0, self.values.size
        for op, operand in bounds:
            v = float(operand)
            if op in ("$gt", "$gte"):
                lo = max(lo, int(np.searchsorted(self.values, v, "right" if op == "$gt" else "left")))
            else:
                hi = min(hi, int(np.searchsorted(self.values, v, "left" if op == "$lt" else "right")))
        return Spans(self.rows, [lo], [max(lo, hi)])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values, "rows": self.rows, "list_values": self.list_values, "list_rows": self.list_rows,
                **self.absence_arrays()}


_CLASSES = {cls.KIND: cls for cls in (KeywordIndex, RangeIndex, BoolIndex)}


class PayloadIndexes:
    """A sealed segment's payload indexes, by field; the filter nodes call ``equal`` / ``range``."""

    def __init__(self, by_field: dict[str, KeywordIndex | RangeIndex]) -> None:
        self.by_field = by_field

    @classmethod
    def build(cls, config: PayloadIndexConfig, meta: MetadataStore, n: int,
              reuse: dict[str, "KeywordIndex | RangeIndex"] | None = None) -> "PayloadIndexes":
        """Every declared field's index over rows ``0..n-1``; those in ``reuse`` of the declared kind are kept."""
        reuse = reuse or {}
        return cls({name: reuse[name] if name in reuse and reuse[name].KIND == kind
                    else _CLASSES[kind].build(meta.column(name), n) for name, kind in config.fields})

    def kinds(self) -> dict[str, str]:
        return {name: ix.KIND for name, ix in self.by_field.items()}

    def equal(self, field: str, col: Column | None, strings: set[str], numbers: list[float], bools: set[bool],
              want_null: bool) -> Spans | None:
        """Rows equal to any of the operands (``want_null``: also null or missing), or None when this
        field's index does not cover them."""
        ix = self.by_field.get(field)
        spans = None if ix is None else ix.equal_values(col, strings, numbers, bools)
        if spans is None or not want_null:
            return spans
        absent = ix.null_or_missing()
        return None if absent is None else spans.plus(absent)

    def missing(self, field: str) -> Spans | None:
        """Rows where ``field`` is missing, or None when it has no index that knows."""
        ix = self.by_field.get(field)
        return None if ix is None else ix.missing()

    def range(self, field: str, col: Column | None, bounds: list[tuple[str, Any]]) -> Spans | None:
        """Rows within all ``bounds`` (``(op, operand)`` pairs of one operand type), or None when not covered."""
        ix = self.by_field.get(field)
        strings = {isinstance(operand, str) for _, operand in bounds}
        if isinstance(ix, KeywordIndex) and strings == {True}:
            return ix.range(col, bounds)
        if isinstance(ix, RangeIndex) and strings == {False}:
            return ix.range(bounds)
        return None

    def to_arrays(self) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
        arrays, meta = {}, []
        for i, (name, ix) in enumerate(self.by_field.items()):
            arrays.update({f"{i}.{key}": a for key, a in ix.arrays().items()})
            meta.append({"field": name, "kind": ix.KIND})
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: list[dict[str, str]]) -> "PayloadIndexes":
        by_field = {}
        for i, entry in enumerate(meta):
            ix_cls = _CLASSES[entry["kind"]]
            # arrays absent from an index stored before list parts existed: its segment has no list rows
            by_field[entry["field"]] = ix_cls(*(arrays.get(f"{i}.{key}") for key in ix_cls.ARRAYS))
        return cls(by_field)


# ------------------------------------------------------------------ segments
def attach_payload_indexes(seg: "Segment", config: PayloadIndexConfig | None,
                           stored: PayloadIndexes | None = None) -> None:
    """Give a segment its collection's config and, when sealed, its indexes: each declared field's
    stored index when it has the declared kind, else one built from its columns (a stored index
    of a field no longer declared, after ``drop_payload_index``, is left unused)."""
    seg.payload_config = config
    seg.payload_indexes = None
    if config is None or not seg.sealed:
        return
    seg.payload_indexes = PayloadIndexes.build(config, seg.meta, seg.n, None if stored is None else stored.by_field)


def ensure_payload_indexes(seg: "Segment") -> PayloadIndexes | None:
    """Build a segment's payload indexes if it should have them and has none (at seal and merge)."""
    if seg.payload_config is not None and seg.payload_indexes is None:
        seg.payload_indexes = PayloadIndexes.build(seg.payload_config, seg.meta, seg.n)
    return seg.payload_indexes


def indexed_rows(seg: "Segment", node: "Node") -> np.ndarray | None:
    """Rows (deleted ones included) matching ``node`` found through the segment's payload indexes,
    or None when they do not cover the filter or it is too broad for them (``INDEX_MAX_FRACTION``)."""
    indexes = seg.payload_indexes
    if indexes is None or not seg.sealed:
        return None
    estimate = node.estimate(seg.meta, indexes)
    if estimate is None or estimate > INDEX_MAX_FRACTION * seg.n:
        return None
    return node.index_rows(seg.meta, indexes)
