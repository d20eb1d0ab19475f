"""Inverted index of one field of one segment: posting lists over the segment's rows.

Used for full-text fields (keys are terms, a posting's value is the term
frequency, BM25 scoring) and sparse-vector fields (keys are the sparse
dimensions, values the stored weights, dot-product scoring); the kernels
(``index/kernels/bm25_*``) are the same. Layout (flat arrays, CSR by key)::

    keys      sorted unique keys (str for text, int64 for sparse), T of them
    offsets   int64[T+1]   postings of key t are [offsets[t], offsets[t+1])
    rows      int32[P]     segment rows, ascending within each key
    values    float32[P]   tf or weight
    doclen    float32[n]   tokens per row (text; 0 for sparse)
    present   bool[n]      the row has the field (counts toward BM25's N)

The growing segment appends to a :class:`PostingsBuilder` and freezes it when
searched (cached until the next append); a seal freezes it for good; a merge
remaps the sources' postings to the merged rows (:func:`merge_indexes`) without
re-tokenising. Deletes are not applied here: searches pass the segment's live
mask, and BM25's document frequencies are counted over live rows (``live_df``).
Stored in a segment's ``postings.bin`` (``storage.arrayfile``, kind POSTINGS; version 1 also held
per-block bounds for a document-at-a-time kernel, ignored on load). What scoring derives from the
postings (impacts under the live avgdl, list bounds, dense maps) is cached per index by ``index.impacts``.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..storage.arrayfile import read_arrays, write_arrays
from .impacts import ImpactCache

KIND, VERSION = "POSTINGS", 2
_CACHE_LOCK = threading.Lock()

_ARRAYS = ("keys", "offsets", "rows", "values", "doclen", "present")


@dataclass
class InvertedIndex:
    """Frozen posting lists (see the module docstring)."""

    keys: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray
    values: np.ndarray
    doclen: np.ndarray
    present: np.ndarray
    _impacts: ImpactCache | None = field(default=None, init=False, repr=False, compare=False)
    _ids: dict[Any, int] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, keys: np.ndarray, key_of_posting: np.ndarray, rows: np.ndarray, values: np.ndarray,
              doclen: np.ndarray, present: np.ndarray) -> "InvertedIndex":
        """From postings whose rows ascend within each key; ``key_of_posting`` indexes the
        (unsorted, unique) ``keys``."""
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        rank = np.empty(order.size, np.int64)
        rank[order] = np.arange(order.size)
        term = rank[key_of_posting]
        perm = np.argsort(term, kind="stable")  # rows stay ascending within a key
        counts = np.bincount(term, minlength=keys.size)
        offsets = np.zeros(keys.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(keys, offsets, rows[perm].astype(np.int32), values[perm].astype(np.float32),
                   doclen.astype(np.float32), present.astype(bool))

    @classmethod
    def empty(cls, key_dtype: Any, n: int = 0) -> "InvertedIndex":
        return cls.build(np.zeros(0, key_dtype), np.zeros(0, np.int64), np.zeros(0, np.int64),
                         np.zeros(0, np.float32), np.zeros(n, np.float32), np.zeros(n, bool))

    @property
    def n(self) -> int:
        return int(self.doclen.shape[0])

    def lookup(self, keys: Sequence[Any]) -> np.ndarray:
        """Local term number of each key (str or int), -1 where this segment lacks it.

        Through a dict key -> number made on first use (as bm25s's vocabulary): a query's few
        keys cost a hash each, where ``searchsorted`` on the unicode key array cost ~10 us a call
        in numpy overhead. Memory: ~100 bytes per distinct key."""
        ids = self._ids
        if ids is None:
            with _CACHE_LOCK:
                if self._ids is None:
                    self._ids = dict(zip(self.keys.tolist(), range(self.keys.size)))
                ids = self._ids
        get = ids.get
        return np.fromiter([get(key, -1) for key in keys], np.int64, len(keys))

    def impacts(self) -> ImpactCache:
        """The scoring data the kernels read (``index.impacts``), made on first use."""
        if self._impacts is None:
            with _CACHE_LOCK:
                if self._impacts is None:
                    self._impacts = ImpactCache(self.offsets, self.rows, self.values, self.doclen)
        return self._impacts

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "InvertedIndex":
        return cls(**{name: np.asarray(arrays[name]) for name in _ARRAYS})


class PostingsBuilder:
    """The growing segment's postings of one field: appended per row, frozen on demand."""

    def __init__(self, key_dtype: Any) -> None:
        self.key_dtype = np.dtype(key_dtype)
        self._ids: dict[Any, int] = {}
        self._terms: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._counts: list[int] = []
        self._doclen: list[float] = []
        self._present: list[bool] = []
        self._frozen: InvertedIndex | None = None

    @property
    def n(self) -> int:
        return len(self._counts)

    def add(self, keys: list[Any] | None, values: list[float] | None, doclen: float = 0.0) -> None:
        """One row: its keys (unique) and values, or None when the row lacks the field."""
        ids = self._ids
        self._present.append(keys is not None)
        if keys is None:
            keys, values = [], []
        self._terms.append(np.fromiter((ids.setdefault(key, len(ids)) for key in keys), np.int64, len(keys)))
        self._values.append(np.asarray(values, np.float32))
        self._counts.append(len(keys))
        self._doclen.append(doclen)
        self._frozen = None

    def freeze(self) -> InvertedIndex:
        if self._frozen is None:
            keys = np.array(list(self._ids), dtype=self.key_dtype) if self._ids else np.zeros(0, self.key_dtype)
            cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
            rows = np.repeat(np.arange(self.n, dtype=np.int64), self._counts)
            self._frozen = InvertedIndex.build(keys, cat(self._terms, np.int64), rows, cat(self._values, np.float32),
                                               np.asarray(self._doclen, np.float32), np.asarray(self._present, bool))
        return self._frozen


def merge_indexes(parts: list[tuple[InvertedIndex, np.ndarray]], n: int, key_dtype: Any) -> InvertedIndex:
    """The postings of a merged segment of ``n`` rows.

    ``parts``: each source index with its row map (source row -> merged row, -1 for
    rows not taken); maps must be increasing and the parts in merged-row order.
    """
    doclen = np.zeros(n, np.float32)
    present = np.zeros(n, bool)
    keys, key_of, rows, values = [], [], [], []
    for index, row_map in parts:
        taken = row_map >= 0
        doclen[row_map[taken]] = index.doclen[taken]
        present[row_map[taken]] = index.present[taken]
        term = np.repeat(np.arange(index.keys.size), np.diff(index.offsets))
        new_rows = row_map[index.rows]
        keep = new_rows >= 0
        keys.append(index.keys)
        key_of.append(term[keep])
        rows.append(new_rows[keep])
        values.append(index.values[keep])
    if not keys:
        return InvertedIndex.empty(key_dtype, n)
    union, inverse = np.unique(np.concatenate(keys).astype(key_dtype), return_inverse=True)
    starts = np.cumsum([0] + [k.size for k in keys])
    key_of = [inverse[s:][kp] for s, kp in zip(starts[:-1], key_of)]
    # parts come in merged-row order, so within a key the rows stay ascending (build sorts stably)
    return InvertedIndex.build(union, np.concatenate(key_of), np.concatenate(rows), np.concatenate(values),
                               doclen, present)


def save_postings(path: Any, fields: dict[str, InvertedIndex]) -> None:
    """One file for all fields of a segment: arrays ``<i>.<name>``, field names in the header."""
    arrays = {f"{i}.{key}": arr for i, index in enumerate(fields.values()) for key, arr in index.to_arrays().items()}
    write_arrays(path, KIND, VERSION, arrays, {"fields": list(fields)})


def load_postings(path: Any, verify: bool = True) -> dict[str, InvertedIndex]:
    _, meta, arrays = read_arrays(path, KIND, (1, VERSION), mmap=False, verify=verify)
    return {name: InvertedIndex.from_arrays({key: arrays[f"{i}.{key}"] for key in _ARRAYS})
            for i, name in enumerate(meta["fields"])}
