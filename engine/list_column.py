"""List values of one payload field, stored through offsets: the rows holding a list, an offsets
array, and the elements in the column's own encoding (kind, float64 value, string code into the
column's vocabulary), so lists are filtered with numpy, stored as arrays and memory-mapped.

Which lists: those whose elements are all scalars a column holds exactly (str, bool, null, finite
floats, ints within float64's exact range). Lists of dicts, nested lists and lists with big ints
stay "complex" (Python values of the few rows that have them): a dotted path reads through dicts
in lists, and those rows are rare.

Layout (arrays ``rows``, ``offsets``, ``kind``, ``num``, ``str``): row ``rows[i]`` holds the
elements ``offsets[i]:offsets[i+1]``; ``rows`` ascends, because a store writes rows in order (a
merge's ``take`` gathers lists in output order). Stored, a column whose lists hold no number
leaves out ``num`` and one with no string ``str`` (read back as a constant, zero-stride array):
12 bytes per list row, and 5 bytes per string element or 9 per number.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .metadata_kinds import EXACT_FLOAT_INT, FALSE, FLOAT, INT, NULL, STR, TRUE


def scalar_list_kinds(value: list) -> list[int] | None:
    """Element kinds of a list a ListColumn can hold, or None (the list stays complex)."""
    kinds = []
    for v in value:
        t = type(v)
        if t is str:
            kinds.append(STR)
        elif t is bool:
            kinds.append(TRUE if v else FALSE)
        elif v is None:
            kinds.append(NULL)
        elif t is float:
            kinds.append(FLOAT)
        elif t is int and abs(v) <= EXACT_FLOAT_INT:
            kinds.append(INT)
        else:
            return None
    return kinds


def _grown(arr: np.ndarray, need: int, fill: Any = 0) -> np.ndarray:
    if need <= arr.shape[0]:
        return arr
    out = np.full(max(need, 2 * arr.shape[0], 16), fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


class ListColumn:
    """The list rows of one column (see the module docstring); growable or over stored arrays."""

    ARRAYS = ("rows", "offsets", "kind", "num", "str")

    def __init__(self) -> None:
        self.rows = np.zeros(0, np.int64)
        self.offsets = np.zeros(1, np.int64)
        self.kind = np.zeros(0, np.int8)
        self.num = np.zeros(0, np.float64)
        self.str_code = np.zeros(0, np.int32)
        self.m = 0  # list rows
        self.e = 0  # elements

    # ---------------------------------------------------------------- writing
    def _reserve(self, rows: int, elements: int) -> None:
        self.rows = _grown(self.rows, self.m + rows)
        self.offsets = _grown(self.offsets, self.m + rows + 1)
        self.kind = _grown(self.kind, self.e + elements)
        self.num = _grown(self.num, self.e + elements, np.nan)
        self.str_code = _grown(self.str_code, self.e + elements, -1)

    def append(self, row: int, value: list, kinds: list[int], code: Callable[[str], int]) -> None:
        """Add ``row``'s list (after every row already held)."""
        k = len(value)
        self._reserve(1, k)
        at = slice(self.e, self.e + k)
        self.kind[at] = kinds
        self.num[at] = [float(v) if kd in (INT, FLOAT) else np.nan for v, kd in zip(value, kinds)]
        self.str_code[at] = [code(v) if kd == STR else -1 for v, kd in zip(value, kinds)]
        self.rows[self.m] = row
        self.e += k
        self.m += 1
        self.offsets[self.m] = self.e

    def append_from(self, src: "ListColumn", positions: np.ndarray, new_rows: np.ndarray,
                    code_map: np.ndarray | None) -> None:
        """Add ``src``'s lists at ``positions`` as rows ``new_rows`` (ascending, after every row held);
        ``code_map`` renumbers string codes (index -1 maps the no-string code)."""
        elements, lengths = src.elements_of(positions)
        self._reserve(positions.size, elements.size)
        at = slice(self.e, self.e + elements.size)
        self.kind[at], self.num[at] = src.kind[elements], src.num[elements]
        codes = src.str_code[elements]
        self.str_code[at] = codes if code_map is None else code_map[codes]
        self.rows[self.m:self.m + positions.size] = new_rows
        self.offsets[self.m + 1:self.m + positions.size + 1] = self.e + np.cumsum(lengths)
        self.m += positions.size
        self.e += elements.size

    # ---------------------------------------------------------------- reading
    def positions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(hit, position)``: which of ``rows`` hold a list, and the list's position for those."""
        held = self.rows[: self.m]
        if not held.size or not rows.size:
            return np.zeros(rows.size, bool), np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(held, rows), held.size - 1)
        hit = held[pos] == rows
        return hit, pos[hit]

    def elements_of(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The element indices of the lists at ``positions``, in order, and each list's length."""
        starts, ends = self.offsets[positions], self.offsets[positions + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if not total:
            return np.zeros(0, np.int64), lengths
        first = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        return first + np.arange(total), lengths

    def any_per_list(self, element_match: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Per list (all, or those at ``positions``), whether any element matches. ``element_match``
        covers every element (all lists) or exactly the elements of ``positions`` in order."""
        if positions is None:
            offsets = self.offsets[: self.m + 1]
        else:
            lengths = self.offsets[positions + 1] - self.offsets[positions]
            offsets = np.concatenate(([0], np.cumsum(lengths)))
        counts = np.concatenate(([0], np.cumsum(element_match, dtype=np.int64)))
        return counts[offsets[1:]] > counts[offsets[:-1]]

    def values(self, positions: np.ndarray, vocab: list[str]) -> list[list[Any]]:
        """The lists at ``positions`` as Python lists, elements as they were written."""
        out = []
        offsets = self.offsets
        for p in positions.tolist():
            a, b = int(offsets[p]), int(offsets[p + 1])
            out.append([_element(kd, x, c, vocab) for kd, x, c in
                        zip(self.kind[a:b].tolist(), self.num[a:b].tolist(), self.str_code[a:b].tolist())])
        return out

    def owners(self) -> np.ndarray:
        """The row of every element (for building indexes)."""
        lengths = np.diff(self.offsets[: self.m + 1])
        return np.repeat(self.rows[: self.m], lengths)

    # ---------------------------------------------------------------- storage
    def to_arrays(self, n: int) -> dict[str, np.ndarray]:
        m = int(np.searchsorted(self.rows[: self.m], n))  # rows below the store's length
        e = int(self.offsets[m])
        kind = self.kind[:e]
        out = {"rows": self.rows[:m].astype(np.int32), "offsets": self.offsets[: m + 1], "kind": kind}
        if np.isin(kind, (INT, FLOAT)).any():
            out["num"] = self.num[:e]
        if (kind == STR).any():
            out["str"] = self.str_code[:e]
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ListColumn":
        out = cls()
        out.rows, out.offsets, out.kind = arrays["rows"], arrays["offsets"], arrays["kind"]
        out.m, out.e = int(out.rows.shape[0]), int(out.kind.shape[0])
        # a part left out held no value of its type: NaN / no string for every element, no memory
        out.num = arrays["num"] if "num" in arrays else np.broadcast_to(np.float64(np.nan), (out.e,))
        out.str_code = arrays["str"] if "str" in arrays else np.broadcast_to(np.int32(-1), (out.e,))
        return out


def _element(kind: int, num: float, code: int, vocab: list[str]) -> Any:
    if kind == STR:
        return vocab[code]
    if kind == INT:
        return int(num)
    if kind == FLOAT:
        return num
    if kind == NULL:
        return None
    return kind == TRUE
