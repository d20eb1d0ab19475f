"""The metadata filter language, validated once and evaluated as numpy masks.

Grammar (MongoDB-style, as in Chroma and Qdrant's JSON filters)::

    filter   := {field: value}                      equality
              | {field: {op: operand, ...}}          several ops on one field are ANDed
              | {"$and": [filter, ...]} | {"$or": [filter, ...]} | {"$not": filter}
              | {clause, clause, ...}                several keys are ANDed
    op       := $eq $ne $gt $gte $lt $lte $in $nin $exists

* Equality operands are str, int, float, bool or None. ``{f: None}`` matches rows
  where f is null or missing. Booleans never equal numbers (JSON semantics).
* Range operands are numbers (compared with numeric values) or strings
  (compared lexicographically with string values).
* ``$in`` / ``$nin`` take a list of equality operands; ``$exists`` takes a bool.
* ``$ne`` and ``$nin`` match rows where the field is missing; ``$not`` negates.
* On a list-valued field, equality and ``$in`` match when any element matches
  (so ``{f: None}`` also matches a list holding null).
* ``{}`` matches every row.
* Nested fields: a dotted path ``"n.x"`` names ``payload["n"]["x"]`` (any depth). A literal
  top-level key that contains the dot wins over the nested reading. Where a step of the path
  meets a list, the path continues into each dict element, and the values found form a list
  (so ``{"items.sku": "a"}`` matches ``{"items": [{"sku": "a"}, {"sku": "b"}]}``). A path that
  stops at a scalar or a missing key is *missing*: ``$exists: false``, ``{path: None}``, ``$ne``
  and ``$nin`` match it, like a missing top-level field. ``resolve_path`` is the reference; the
  vectorised masks evaluate nested paths row by row over the rows whose top-level value is a
  dict or list (the only rows that can hold one).

Evaluation: ``mask(store)`` scans the columns of every row; ``mask_at(store, rows)`` evaluates
only the given rows (sorted), so a conjunction driven by a payload index reads the other
fields' columns at the index's rows alone. ``estimate`` / ``index_rows`` answer a node from a
segment's payload indexes (``engine.payload_index``) where they cover it, and return None
where they do not (the caller scans).
"""
from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .echo import shorten
from .errors import FilterError
from .metadata import BIG_INT, FALSE, FLOAT, INT, MISSING, NULL, TRUE, MetadataStore

if TYPE_CHECKING:
    from .list_column import ListColumn
    from .payload_index import PayloadIndexes


def sorted_unique(rows: np.ndarray) -> np.ndarray:
    """``np.unique`` of row numbers by sort and neighbour compare (numpy 2's ``unique`` measured
    ~150x slower than ``sort`` on 60k int32 rows here)."""
    rows = np.sort(rows)
    if rows.size > 1:
        rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]
    return rows

EQ_TYPES = (str, int, float, bool, type(None))
_RANGE_OPS = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
FIELD_OPS = ("$eq", "$ne", "$in", "$nin", "$exists", *_RANGE_OPS)
LOGICAL_OPS = ("$and", "$or", "$not")
#: Deepest nesting of $and/$or/$not (the top-level dict is level 1). Over gRPC a level is at most
#: 2 messages, so every accepted filter decodes well inside protobuf's 100-message limit.
MAX_DEPTH = 32


_MISSING = object()


def resolve_path(payload: Mapping[str, Any], path: str) -> Any:
    """The value a field path names in a payload, or ``_MISSING`` (the reference semantics above)."""
    if path in payload:
        return payload[path]
    head, dot, rest = path.partition(".")
    if not dot or head not in payload:
        return _MISSING
    return _descend(payload[head], rest)


def _descend(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return resolve_path(value, path)
    if isinstance(value, list):
        found = [v for v in (_descend(item, path) for item in value) if v is not _MISSING]
        return [x for v in found for x in (v if isinstance(v, list) else [v])] if found else _MISSING
    return _MISSING


def _at(arr: np.ndarray, sel: np.ndarray | None, n: int) -> np.ndarray:
    """A column's values at the selected rows."""
    return arr[:n] if sel is None else arr[sel]


def _size(store: MetadataStore, sel: np.ndarray | None) -> int:
    return len(store) if sel is None else int(sel.size)


def _sparse_at(rows: Any, sel: np.ndarray | None, n: int) -> Iterator[tuple[int, int]]:
    """``(position in the selection, row)`` of the rows in ``rows`` (a column's sparse rows) that are selected."""
    if sel is None:
        return ((r, r) for r in rows if r < n)
    wanted = np.fromiter(rows, np.int64)
    if not wanted.size or not sel.size:
        return iter(())
    pos = np.minimum(np.searchsorted(sel, wanted), sel.size - 1)
    hit = sel[pos] == wanted
    return zip(pos[hit].tolist(), wanted[hit].tolist())


def _list_rows_matching(lists: "ListColumn", sel: np.ndarray | None, out: np.ndarray,
                        element_mask: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Set ``out`` (a mask over all rows, or over ``sel``) where a row's list has an element that
    ``element_mask(kind, num, str_code)`` accepts: vectorised over the elements, no per-row Python."""
    if sel is None:
        e = lists.e
        match = lists.any_per_list(element_mask(lists.kind[:e], lists.num[:e], lists.str_code[:e]))
        out[lists.rows[: lists.m][match]] = True
        return
    hit, positions = lists.positions(sel)
    if positions.size:
        elements, _ = lists.elements_of(positions)
        match = lists.any_per_list(element_mask(lists.kind[elements], lists.num[elements],
                                                lists.str_code[elements]), positions)
        out[np.flatnonzero(hit)[match]] = True


def _is_num(kind: np.ndarray) -> np.ndarray:
    return (kind == FLOAT) | (kind == INT) | (kind == BIG_INT)


def _with_nested_rows(node: "Node", field: str, store: MetadataStore, sel: np.ndarray | None,
                      out: np.ndarray) -> np.ndarray:
    """Complete a field node's column mask for a dotted path: rows without the literal key whose
    top-level value is a dict or list (the only rows that can hold the path) get the reference
    ``matches``; every other row already has the missing-path answer."""
    if "." not in field:
        return out
    col = store.column(field.partition(".")[0])
    if col is None or not col.complex_rows:
        return out
    literal = store.column(field)
    hits = [(p, r) for p, r in _sparse_at(col.complex_rows, sel, len(store))
            if literal is None or literal.kind[r] == MISSING]
    if hits:
        pos, rows = (np.array(v, np.int64) for v in zip(*hits))
        out[pos] = [node.matches(payload) for payload in store.payloads(rows)]
    return out


class Node:
    """A compiled filter node; ``mask(store)`` returns a boolean array over its rows."""

    def mask(self, store: MetadataStore) -> np.ndarray:
        return self._eval(store, None)

    def mask_at(self, store: MetadataStore, rows: np.ndarray) -> np.ndarray:
        """The mask at ``rows`` only (sorted int64 rows of the store)."""
        return self._eval(store, rows)

    def _eval(self, store: MetadataStore, sel: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def estimate(self, store: MetadataStore, indexes: "PayloadIndexes") -> int | None:
        """An upper bound on the rows matching, from payload indexes alone (None: they do not cover this node)."""
        return None

    def index_rows(self, store: MetadataStore, indexes: "PayloadIndexes") -> np.ndarray | None:
        """The matching rows (sorted, deleted ones included) found through payload indexes, or None."""
        return None

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Row-wise evaluation (the reference semantics; used for complex values and tests)."""
        raise NotImplementedError


@dataclass(frozen=True)
class And(Node):
    children: tuple[Node, ...]

    def _eval(self, store, sel):
        out = np.ones(_size(store, sel), bool)
        for child in self.children:
            out &= child._eval(store, sel)
        return out

    def _driver(self, store, indexes) -> tuple[int, Any, set[int]] | None:
        """The cheapest way into this conjunction through the indexes: ``(estimate, source, children
        it covers)``, the source a child node or the joined span of several ranges on one field
        (``$gte a`` with ``$lt b``: a between), or None when no child is indexed."""
        best = None
        ranges: dict[str, list[int]] = {}
        for i, child in enumerate(self.children):
            if isinstance(child, Range):
                ranges.setdefault(child.field, []).append(i)
            est = child.estimate(store, indexes)
            if est is not None and (best is None or est < best[0]):
                best = (est, child, {i})
        for field, at in ranges.items():
            bounds = [(self.children[i].op, self.children[i].operand) for i in at]
            spans = indexes.range(field, store.column(field), bounds) if len(at) > 1 else None
            if spans is not None and (best is None or spans.count < best[0]):
                best = (spans.count, spans, set(at))
        return best

    def estimate(self, store, indexes):
        best = self._driver(store, indexes)
        return None if best is None else best[0]

    def index_rows(self, store, indexes):
        """The cheapest indexed way's rows, narrowed by the other children evaluated at those rows only."""
        best = self._driver(store, indexes)
        if best is None:
            return None
        _, source, covered = best
        rows = source.index_rows(store, indexes) if isinstance(source, Node) else source.rows()
        rest = tuple(c for i, c in enumerate(self.children) if i not in covered)
        if not rest or not rows.size:
            return rows
        return rows[And(rest).mask_at(store, rows)]

    def matches(self, payload):
        return all(c.matches(payload) for c in self.children)


@dataclass(frozen=True)
class Or(Node):
    children: tuple[Node, ...]

    def _eval(self, store, sel):
        out = np.zeros(_size(store, sel), bool)
        for child in self.children:
            out |= child._eval(store, sel)
        return out

    def estimate(self, store, indexes):
        total = 0
        for child in self.children:
            est = child.estimate(store, indexes)
            if est is None:  # one child the indexes cannot answer: the union needs a scan
                return None
            total += est
        return total

    def index_rows(self, store, indexes):
        parts = [child.index_rows(store, indexes) for child in self.children]
        if any(p is None for p in parts):
            return None
        return sorted_unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]

    def matches(self, payload):
        return any(c.matches(payload) for c in self.children)


@dataclass(frozen=True)
class Not(Node):
    child: Node

    def _eval(self, store, sel):
        return ~self.child._eval(store, sel)

    def matches(self, payload):
        return not self.child.matches(payload)


def _scalar_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def _value_equal(stored: Any, operand: Any) -> bool:
    if isinstance(stored, list):
        return any(_value_equal(v, operand) for v in stored)
    return _scalar_equal(stored, operand)


@dataclass(frozen=True)
class In(Node):
    """Field equals any of ``values`` (``$eq`` is In with one value)."""

    field: str
    values: tuple[Any, ...]

    def _eval(self, store, sel):
        return _with_nested_rows(self, self.field, store, sel, self._column_mask(store, sel))

    def _column_mask(self, store, sel):
        n = len(store)
        col = store.column(self.field)
        if col is None:
            return np.full(_size(store, sel), any(v is None for v in self.values))
        strs = self._strings()
        lut = col.string_lut(lambda vocab: np.fromiter((s in strs for s in vocab), bool, len(vocab))) if strs else None
        out = self._scalar_mask(_at(col.kind, sel, n), _at(col.num, sel, n), _at(col.str_code, sel, n), lut)
        if col.lists is not None:  # a list matches when any element does
            _list_rows_matching(col.lists, sel, out, lambda k, x, c: self._scalar_mask(k, x, c, lut))
        for pos, row in _sparse_at(col.complex_rows, sel, n):
            if any(_value_equal(col.complex_rows[row], v) for v in self.values):
                out[pos] = True
        return out

    def _scalar_mask(self, kind: np.ndarray, num: np.ndarray, code: np.ndarray, lut: np.ndarray | None) -> np.ndarray:
        """Equality of encoded scalars (a column's rows or a list's elements) with any operand;
        ``lut`` marks the operand strings in the column's vocabulary. A missing row is null here."""
        out = np.zeros(kind.shape[0], bool)
        nums = self._numbers()
        if nums:
            out |= _is_num(kind) & np.isin(num, nums)
        if lut is not None:
            out |= lut[code]
        for b in {v for v in self.values if isinstance(v, bool)}:
            out |= kind == (TRUE if b else FALSE)
        if any(v is None for v in self.values):
            out |= (kind == NULL) | (kind == MISSING)
        return out

    def _numbers(self) -> list[float]:
        return [float(v) for v in self.values if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def _strings(self) -> set[str]:
        return {v for v in self.values if isinstance(v, str)}

    def _lookup(self, store, indexes):
        """``(index spans, complex rows that match)``, or None when the indexes cannot answer."""
        col = store.column(self.field)
        spans = indexes.equal(self.field, col, self._strings(), self._numbers(),
                              {v for v in self.values if isinstance(v, bool)}, any(v is None for v in self.values))
        if spans is None:
            return None
        extra = [] if col is None else [r for r, v in col.complex_rows.items()
                                        if r < len(store) and any(_value_equal(v, x) for x in self.values)]
        return spans, extra

    def estimate(self, store, indexes):
        found = self._lookup(store, indexes)
        return None if found is None else found[0].count + len(found[1])

    def index_rows(self, store, indexes):
        found = self._lookup(store, indexes)
        if found is None:
            return None
        spans, extra = found
        rows = spans.rows()
        return sorted_unique(np.concatenate((rows, np.array(extra, np.int64)))) if extra else rows

    def matches(self, payload):
        stored = resolve_path(payload, self.field)
        if stored is _MISSING or stored is None:
            return any(v is None for v in self.values)
        return any(_value_equal(stored, v) for v in self.values)


@dataclass(frozen=True)
class Range(Node):
    field: str
    op: str
    operand: float | str

    def _eval(self, store, sel):
        return _with_nested_rows(self, self.field, store, sel, self._column_mask(store, sel))

    def _column_mask(self, store, sel):
        n = len(store)
        col = store.column(self.field)
        if col is None:
            return np.zeros(_size(store, sel), bool)
        cmp = _RANGE_OPS[self.op]
        if isinstance(self.operand, str):
            lut = col.string_lut(lambda vocab: np.fromiter((cmp(s, self.operand) for s in vocab), bool, len(vocab)))
            return lut[_at(col.str_code, sel, n)]
        with np.errstate(invalid="ignore"):
            return _is_num(_at(col.kind, sel, n)) & cmp(_at(col.num, sel, n), float(self.operand))

    def estimate(self, store, indexes):
        spans = indexes.range(self.field, store.column(self.field), [(self.op, self.operand)])
        return None if spans is None else spans.count

    def index_rows(self, store, indexes):
        spans = indexes.range(self.field, store.column(self.field), [(self.op, self.operand)])
        return None if spans is None else spans.rows()

    def matches(self, payload):
        v = resolve_path(payload, self.field)
        cmp = _RANGE_OPS[self.op]
        if isinstance(self.operand, str):
            return isinstance(v, str) and cmp(v, self.operand)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and cmp(float(v), float(self.operand))


@dataclass(frozen=True)
class Exists(Node):
    field: str
    want: bool

    def _eval(self, store, sel):
        return _with_nested_rows(self, self.field, store, sel, self._column_mask(store, sel))

    def _column_mask(self, store, sel):
        col = store.column(self.field)
        present = np.zeros(_size(store, sel), bool) if col is None else _at(col.kind, sel, len(store)) != MISSING
        return present if self.want else ~present

    def estimate(self, store, indexes):
        missing = indexes.missing(self.field)
        if missing is None:
            return None
        return missing.count if not self.want else len(store) - missing.count

    def index_rows(self, store, indexes):
        missing = indexes.missing(self.field)
        if missing is None:
            return None
        rows = missing.rows()
        if not self.want:
            return rows
        present = np.ones(len(store), bool)
        present[rows] = False
        return np.flatnonzero(present)

    def matches(self, payload):
        return (resolve_path(payload, self.field) is not _MISSING) == self.want


class MatchAll(Node):
    def _eval(self, store, sel):
        return np.ones(_size(store, sel), bool)

    def matches(self, payload):
        return True


def keyed_filter(spec: Any) -> tuple[Node | None, str | None]:
    """A compiled filter (None for no filter) and its canonical text, the key segments cache its masks under."""
    if spec is None:
        return None, None
    node = compile_filter(spec)
    return node, json.dumps(spec, sort_keys=True, default=_key_value)


def _key_value(value: Any) -> Any:
    """JSON for what json.dumps cannot write in a valid filter: a numpy scalar is the number it
    compiles to, another mapping a dict, anything else (a compiled node) its type and repr under a
    key no filter may use, so equal filters share a key and no two differ only by a repr. (``repr``
    alone made ``np.int64(5)`` and the string ``"np.int64(5)"`` one key, and one cached mask.)"""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return dict(value)
    return {"$repr": [type(value).__qualname__, repr(value)]}


def compile_filter(spec: Any) -> Node:
    """Validate a filter and compile it; raises FilterError naming the bad part."""
    return _compile(spec, "filter", 1)


def _compile(spec: Any, where: str, depth: int) -> Node:
    if isinstance(spec, Node):
        return spec
    if not isinstance(spec, Mapping):
        raise FilterError(f"{where} must be a dict, got {type(spec).__name__}: {shorten(spec)}")
    if depth > MAX_DEPTH:
        raise FilterError(f"{shorten(where, 200)}: $and/$or/$not nest deeper than {MAX_DEPTH} levels, "
                          "the most a filter may have")
    clauses: list[Node] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise FilterError(f"{where}: keys must be strings, got {shorten(key)}")
        if key.startswith("$"):
            clauses.append(_logical(key, value, f"{where}.{key}", depth))
        else:
            clauses.append(_field(key, value, f"{where}.{key}"))
    if not clauses:
        return MatchAll()
    return clauses[0] if len(clauses) == 1 else And(tuple(clauses))


def _logical(op: str, value: Any, where: str, depth: int) -> Node:
    if op in ("$and", "$or"):
        if not isinstance(value, (list, tuple)) or not value:
            raise FilterError(f"{where} takes a non-empty list of filters, got {shorten(value)}")
        children = tuple(_compile(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        return And(children) if op == "$and" else Or(children)
    if op == "$not":
        return Not(_compile(value, where, depth + 1))
    raise FilterError(f"unknown operator {shorten(op)} at {where}; logical operators are {', '.join(LOGICAL_OPS)}")


def _eq_operand(value: Any, where: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, EQ_TYPES) or (isinstance(value, float) and not np.isfinite(value)):
        raise FilterError(f"{where}: operand must be a string, finite number, bool or null, got {shorten(value)}")
    return value


def _field(field: str, value: Any, where: str) -> Node:
    if not isinstance(value, Mapping):
        return In(field, (_eq_operand(value, where),))
    if not value:
        raise FilterError(f"{where}: empty operator dict; use a value for equality or ops like $gt")
    nodes: list[Node] = []
    for op, operand in value.items():
        at = f"{where}.{op}"
        if op == "$eq":
            nodes.append(In(field, (_eq_operand(operand, at),)))
        elif op == "$ne":
            nodes.append(Not(In(field, (_eq_operand(operand, at),))))
        elif op in ("$in", "$nin"):
            if not isinstance(operand, (list, tuple)):
                raise FilterError(f"{at} takes a list, got {shorten(operand)}")
            node = In(field, tuple(_eq_operand(v, at) for v in operand))
            nodes.append(node if op == "$in" else Not(node))
        elif op in _RANGE_OPS:
            if isinstance(operand, np.generic):
                operand = operand.item()
            ok = isinstance(operand, str) or (isinstance(operand, (int, float)) and not isinstance(operand, bool)
                                              and np.isfinite(operand))
            if not ok:
                raise FilterError(f"{at} takes a finite number or a string, got {shorten(operand)}")
            nodes.append(Range(field, op, operand))
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(f"{at} takes true or false, got {shorten(operand)}")
            nodes.append(Exists(field, operand))
        else:
            raise FilterError(f"unknown operator {shorten(op)} at {where}; field operators are {', '.join(FIELD_OPS)}")
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))
