"""Exact k-d tree index for low-dimensional data (kernels in ``kernels/kdtree_numba.py``).

Below roughly 16 dimensions a k-d tree answers exact k-NN touching a few
hundred points instead of all of them, so it beats brute force by orders of
magnitude while staying exact (results equal :class:`FlatIndex` up to float
rounding; ties break by lower id).

Incremental updates, and why:

* Rows are stored in tree order: leaf ``[start, end)`` ranges index the row
  array directly, so a leaf scan is a contiguous read. A rebuild compacts
  (drops removed rows) and re-orders rows; row numbers are internal, ids are
  kept in the :class:`LabelTable`.
* ``add`` appends to an unindexed buffer after the tree's rows; searches scan
  it exactly (which also seeds the k-th distance bound before the descent).
* ``remove`` tombstones; removed rows are masked out and subtrees without a
  live, allowed point are pruned via per-node counts.
* Rebuilds are lazy: the next search rebuilds when the buffer exceeds
  ``max(REBUILD_MIN_BUFFER, REBUILD_BUFFER_FRACTION * tree rows)`` or removed
  rows exceed ``REBUILD_DEAD_FRACTION`` of all rows. Bulk loads (many ``add``
  calls before the first search) therefore cost one build; interleaved
  writes pay an amortised O(log n / fraction) per row, and a query scans at
  most a few percent of the rows exactly. :meth:`build` forces a rebuild.

A rebuild swaps one :class:`_Layout` reference under a lock, so concurrent
searches (the collection's shared read lock) see either the old or the new
tree, never a mix.
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ..engine.backend import Backend, load_kernels
from ..engine.errors import InvalidArgumentError
from .base import Index, LabelTable, RangeResult, pad_results, positive_int_param
from .factory import register_spec, spec_option
from .options import Option
from .kernels.topk import METRIC_CODES

#: Rebuild when the unindexed buffer exceeds this many rows and ...
REBUILD_MIN_BUFFER = 2048
#: ... this fraction of the rows in the tree.
REBUILD_BUFFER_FRACTION = 1 / 32
#: Rebuild when more than this fraction of stored rows is removed.
REBUILD_DEAD_FRACTION = 0.25
#: Points per leaf: scipy cKDTree's default, so bench/kdtree_vs_scipy.py compares like with like.
DEFAULT_LEAF_SIZE = 16
#: Largest leaf: beyond this the tree is a slower brute-force scan.
MAX_LEAF_SIZE = 1 << 16
#: Below this many rows the build is sequential (thread start-up costs more than it saves).
PARALLEL_BUILD_MIN_ROWS = 65_536

_NO_MASK = np.zeros(0, dtype=bool)
_NO_COUNTS = np.zeros(0, dtype=np.int64)


@dataclass
class _Layout:
    """Rows (tree-ordered prefix ``[0, ntree)``, then the buffer) and the tree over the prefix."""

    x: np.ndarray
    table: LabelTable
    ntree: int
    bmin: np.ndarray
    bmax: np.ndarray
    start: np.ndarray
    end: np.ndarray
    right: np.ndarray

    @property
    def size(self) -> int:
        return self.table.size


class KDTreeIndex(Index):
    """Exact k-NN and radius search with a k-d tree; ``max_leaves`` makes a search approximate."""

    KIND = "KDTREE"
    METRICS = ("l2", "cosine")
    EXACT = True
    #: Exact, yet worth keeping per segment: it replaces the brute-force scan (see Collection._new_index).
    REPLACES_SCAN = True
    SEARCH_PARAMS = frozenset({"max_leaves"})
    OPTIONS = {"leaf_size": Option(int, DEFAULT_LEAF_SIZE, 1, MAX_LEAF_SIZE)}
    leaf_size: int

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)  # 'ip' is rejected here: no bound to prune with
        try:
            self._kernels = load_kernels("shoal.index.kernels", "kdtree", self.backend)
        except ModuleNotFoundError:
            raise InvalidArgumentError(
                f"KDTree has Numba kernels only; backend {self.backend.name!r} cannot run it "
                "(use backend 'numba' or 'auto')") from None
        self._rebuild_lock = threading.Lock()
        self._data = _Layout(np.zeros((0, self.dim), np.float32), LabelTable(), 0,
                             *self._empty_nodes())

    def _empty_nodes(self) -> tuple[np.ndarray, ...]:
        return (np.zeros((0, self.dim), np.float32), np.zeros((0, self.dim), np.float32),
                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

    # ----------------------------------------------------------------- state
    @property
    def ntotal(self) -> int:
        return self._data.table.live_count

    @property
    def buffered(self) -> int:
        """Rows added since the last build (scanned exactly by every search)."""
        return self._data.size - self._data.ntree

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._data.table.contains(ids)

    def _add(self, x: np.ndarray, labels: np.ndarray) -> None:
        data = self._data
        rows, _ = data.table.append(labels)
        need = int(rows[-1]) + 1
        if need > data.x.shape[0] or not data.x.flags.writeable:
            grown = np.zeros((max(need, 2 * data.x.shape[0], 64), self.dim), dtype=np.float32)
            used = data.size - rows.size
            grown[:used] = data.x[:used]
            data.x = grown
        data.x[rows] = x

    def _remove(self, labels: np.ndarray) -> int:
        return self._data.table.remove(labels).size

    def build(self) -> None:
        """Index every live row now (compacts removed rows, empties the buffer)."""
        with self._rebuild_lock:
            self._data = self._built(self._data)

    def finish_adds(self) -> None:
        if self.buffered:
            self.build()

    def _built(self, data: _Layout) -> _Layout:
        live = np.flatnonzero(~data.table.deleted[: data.size])
        x = np.ascontiguousarray(data.x[live])
        threads = numba.get_num_threads()
        top = math.ceil(math.log2(4 * threads)) if x.shape[0] >= PARALLEL_BUILD_MIN_ROWS and threads > 1 else 0
        perm, bmin, bmax, start, end, right = self._kernels.build(x, self.leaf_size, top)
        return _Layout(np.ascontiguousarray(x[perm]), LabelTable(data.table.labels[live][perm]), live.size,
                       bmin, bmax, start, end, right)

    def _current(self) -> _Layout:
        """The layout to search, rebuilt first when the policy in the module docstring says so."""
        data = self._data
        if self._stale(data):
            with self._rebuild_lock:
                if self._stale(self._data):
                    self._data = self._built(self._data)
                data = self._data
        return data

    @staticmethod
    def _stale(data: _Layout) -> bool:
        buffered = data.size - data.ntree
        dead = data.size - data.table.live_count
        return (buffered > max(REBUILD_MIN_BUFFER, REBUILD_BUFFER_FRACTION * data.ntree)
                or dead > REBUILD_DEAD_FRACTION * data.size)

    # ---------------------------------------------------------------- search
    def _mask_args(self, data: _Layout, allowed: np.ndarray | None) -> tuple[np.ndarray, bool, np.ndarray, bool]:
        """Row mask (live and allowed) and per-node allowed counts, or placeholders when all rows pass."""
        if allowed is None and data.table.live_count == data.size:
            return _NO_MASK, False, _NO_COUNTS, False
        mask = data.table.row_mask(allowed)
        if mask.all():
            return _NO_MASK, False, _NO_COUNTS, False
        counts = self._kernels.node_counts(mask, data.start, data.end, data.right)
        return mask, True, counts, True

    def _tree_args(self, data: _Layout) -> tuple[Any, ...]:
        return (data.x[: data.size], data.table.labels[: data.size], data.ntree,
                data.bmin, data.bmax, data.start, data.end, data.right)

    def search_cost(self, live: int, matched: int, k: int, params: dict[str, Any]) -> float:
        """A descent visits about log2(n) nodes and the leaves near the query, about k / s
        points through a filter keeping a fraction s; rows added since the last build are scanned."""
        return self.leaf_size * math.log2(live + 2) + (k + self.leaf_size) * live / max(matched, 1) + self.buffered

    def _search(self, q: np.ndarray, k: int, params: dict[str, Any],
                allowed: np.ndarray | None, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        max_leaves = positive_int_param(params, "max_leaves", 1) if "max_leaves" in params else 0
        data = self._current()
        out_d, out_i = pad_results(q.shape[0], k)
        if data.size == 0:
            return out_d, out_i
        self._kernels.knn(q, *self._tree_args(data), *self._mask_args(data, allowed),
                          METRIC_CODES[self.metric], max_leaves, out_d, out_i)
        return out_d, out_i

    def _range_search(self, q: np.ndarray, radius: float, params: dict[str, Any],
                      allowed: np.ndarray | None) -> RangeResult:
        data = self._current()
        return self._kernels.range_search(q, *self._tree_args(data), *self._mask_args(data, allowed),
                                          METRIC_CODES[self.metric], np.float32(radius))

    # ------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        data = self._data
        arrays = {"vectors": data.x[: data.size], **data.table.state(), "bmin": data.bmin, "bmax": data.bmax,
                  "start": data.start, "end": data.end, "right": data.right}
        return arrays, {"leaf_size": self.leaf_size, "ntree": data.ntree}

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        index = cls(meta["dim"], meta["metric"], leaf_size=meta["leaf_size"], backend=backend)
        table = LabelTable(np.array(arrays["labels"]), np.array(arrays["deleted"]))
        index._data = _Layout(np.asarray(arrays["vectors"]), table, int(meta["ntree"]),
                              *(np.asarray(arrays[name]) for name in ("bmin", "bmax", "start", "end", "right")))
        return index


@register_spec(r"kdtree(\d+)?", "KDTree")
def _kdtree(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> Index:
    if match.group(1):
        spec_option(options, "leaf_size", int(match.group(1)), match.group(0))
    return KDTreeIndex(dim, metric, **options)
