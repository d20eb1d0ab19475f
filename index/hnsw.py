"""HNSW (Malkov & Yashunin): a layered proximity graph searched best-first.

* Graph in flat arrays: level-0 adjacency ``(n, 2M)`` int32, upper levels in a
  pooled ``(slots, M)`` array addressed through ``up_off``.
* Build in batches: new nodes search the current graph in parallel (Numba
  ``prange``), then are linked serially with the neighbour-selection
  heuristic. A batch is at most 1/16 of the graph, so nodes rarely miss a
  peer from their own batch. Levels come from a generator seeded with
  ``(seed, rows so far)``: the same adds in the same order give the same graph,
  whatever the thread count.
* Filters and deletions go into the kernel as an allowed mask: the beam holds
  only allowed nodes and looks through disallowed ones two hops deep (ACORN
  spirit). When few rows are allowed, or traversal finds fewer than k, the
  index answers by exact search over the allowed rows, so k results are
  returned whenever k rows match.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numba
import numpy as np

from ..engine.backend import Backend, load_kernels
from ..engine.metrics import prepare
from ..engine.threads import threads_for_batch
from .base import Index, LabelTable, RangeResult, pad_results, positive_int_param
from .options import SEED, Option
from .exact import knn_over
from .factory import register_spec, spec_option
from .kernels import hnsw_numba as kernels
from .kernels.topk import sq_norms

#: Nodes inserted one at a time before batching starts.
SERIAL_PREFIX = 32
MAX_BATCH = 4096
_NO_MASK = np.zeros(1, bool)
#: A batch is at most this fraction (1/BATCH_DIVISOR) of the graph built so far.
BATCH_DIVISOR = 16
#: Largest M: 2M int32 neighbours per node at level 0 (hnswlib suggests 2-100; FAISS uses up to 64).
MAX_M = 512
#: Largest beam (ef_construction / ef_search): a build batch holds MAX_BATCH x levels x ef candidates.
MAX_EF = 16384
#: Searches whose beam (max(ef_search, k)) exceeds this are answered exactly. The beam is a sorted
#: array (O(ef) per insert, about ef x M inserts per query): at ef = 2048, M = 16 that is ~7e7 moves,
#: the cost of an exact scan of ~0.5M 128-d rows, which is also exact. Derived, not measured.
GRAPH_MAX_EF = 2048
#: Exact-scan rows that cost as much as one neighbour evaluation of a graph walk. Measured on
#: GloVe-50, 400k rows, M=16, 2 cores: an unfiltered walk at ef=64 took 118 µs, an exact scan
#: 4.9 ns per row, so 118 µs / 4.9 ns / (64 · 16) ≈ 24 (random access and heap upkeep per step).
GRAPH_ROW_COST = 24.0


class HNSWIndex(Index):
    """Approximate k-NN over an HNSW graph; ``params={"ef_search": 64}`` per call."""

    KIND = "HNSW"
    SEARCH_PARAMS = frozenset({"ef_search"})
    POOL_FREE_BELOW = 3  # one or two queries run search_serial
    OPTIONS = {"M": Option(int, 16, 2, MAX_M), "ef_construction": Option(int, 200, 1, MAX_EF),
               "ef_search": Option(int, 64, 1, MAX_EF), "seed": SEED}
    M: int
    ef_construction: int
    ef_search: int
    seed: int

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)
        self._code = 0 if self.metric == "l2" else 1
        #: Added to kernel distances: the kernel's -dot becomes the cosine distance 1 - dot.
        self._offset = np.float32(1.0 if self.metric == "cosine" else 0.0)
        self._normalize = self.metric == "cosine"
        self._flat = load_kernels("shoal.index.kernels", "flat", self.backend)
        self._table = LabelTable()
        self._x = np.zeros((0, self.dim), np.float32)
        self._nbr0 = np.zeros((0, 2 * self.M), np.int32)
        self._cnt0 = np.zeros(0, np.int32)
        self._levels = np.zeros(0, np.int32)
        self._up_off = np.zeros(0, np.int64)
        self._nbr_up = np.zeros((0, self.M), np.int32)
        self._cnt_up = np.zeros(0, np.int32)
        self._up_used = 0
        self._entry = -1
        self._max_level = -1
        self._visited = np.zeros((0, 0), np.int32)
        self._tags = np.zeros(0, np.int64)

    # ------------------------------------------------------------------ build
    @property
    def ntotal(self) -> int:
        return self._table.live_count

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self._table.contains(ids)

    def _draw_levels(self, start: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        u = 1.0 - rng.random(n)  # (0, 1]
        return np.minimum((-np.log(u) / math.log(self.M)).astype(np.int32), 30)

    def _reserve(self, n_rows: int, n_up: int) -> None:
        def grow(arr: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
            if n <= arr.shape[0] and arr.flags.writeable:
                return arr
            new = np.full((max(n, 2 * arr.shape[0], 64),) + arr.shape[1:], fill, arr.dtype)
            new[: arr.shape[0]] = arr
            return new

        self._x = grow(self._x, n_rows)
        self._nbr0 = grow(self._nbr0, n_rows)
        self._cnt0 = grow(self._cnt0, n_rows)
        self._levels = grow(self._levels, n_rows)
        self._up_off = grow(self._up_off, n_rows)
        self._nbr_up = grow(self._nbr_up, n_up)
        self._cnt_up = grow(self._cnt_up, n_up)

    def _scratch(self, n_rows: int) -> None:
        """One visited row per pool thread (sized for the whole pool, so a per-call
        thread limit never reallocates), grown geometrically with the graph."""
        threads = numba.config.NUMBA_NUM_THREADS
        if self._visited.shape[0] != threads or self._visited.shape[1] < n_rows:
            width = max(n_rows, 2 * self._visited.shape[1]) if self._visited.shape[1] < n_rows else self._visited.shape[1]
            self._visited = np.zeros((threads, width), np.int32)
            self._tags = np.zeros(threads, np.int64)

    def _add(self, x: np.ndarray, labels: np.ndarray) -> None:
        rows, _ = self._table.append(labels)
        start = int(rows[0])
        levels = self._draw_levels(start, rows.size)
        n_up = self._up_used + int(levels.sum())
        self._reserve(start + rows.size, n_up)
        self._x[rows] = x
        self._levels[rows] = levels
        self._cnt0[rows] = 0
        offsets = self._up_used + np.concatenate([[0], np.cumsum(levels)[:-1]]).astype(np.int64)
        self._up_off[rows] = offsets
        self._cnt_up[self._up_used:n_up] = 0
        self._up_used = n_up
        self._scratch(start + rows.size)
        self._insert(rows)

    def _insert(self, rows: np.ndarray) -> None:
        from tqdm.auto import tqdm

        pos = 0
        bar = tqdm(total=rows.size, desc="HNSW build", unit="vec", disable=rows.size < 50_000, leave=False)
        while pos < rows.size:
            if self._entry < 0:
                self._entry = int(rows[pos])
                self._max_level = int(self._levels[self._entry])
                pos += 1
                bar.update(1)
                continue
            built = int(rows[pos])
            size = 1 if built < SERIAL_PREFIX else min(MAX_BATCH, max(1, built // BATCH_DIVISOR))
            batch = rows[pos:pos + size]
            self._insert_batch(batch)
            pos += batch.size
            bar.update(batch.size)
        bar.close()

    def _insert_batch(self, batch: np.ndarray) -> None:
        levels = self._levels[batch]
        stored = np.minimum(levels, self._max_level) + 1
        cand_off = np.concatenate([[0], np.cumsum(stored)[:-1]]).astype(np.int64)
        total = int(stored.sum())
        ef = self.ef_construction
        cand_ids = np.zeros((total, ef), np.int64)
        cand_d = np.zeros((total, ef), np.float32)
        cand_cnt = np.zeros(total, np.int64)
        kernels.insertion_candidates(self._x, batch, levels, self._nbr0, self._cnt0, self._nbr_up, self._cnt_up,
                                     self._up_off, self._entry, self._max_level, self._code, self._visited,
                                     self._tags, cand_off, cand_ids, cand_d, cand_cnt)
        kernels.link_batch(self._x, batch, levels, self._nbr0, self._cnt0, self._nbr_up, self._cnt_up, self._up_off,
                           self._max_level, self.M, self._code, cand_off, cand_ids, cand_d, cand_cnt)
        top = int(np.argmax(levels))
        if levels[top] > self._max_level:
            self._max_level = int(levels[top])
            self._entry = int(batch[top])

    # ----------------------------------------------------------------- search
    def _prepare_queries(self, q: np.ndarray) -> np.ndarray:
        return q  # the kernel normalises cosine queries; _exact prepares its own

    def search_cost(self, live: int, matched: int, k: int, params: dict[str, Any]) -> float:
        """A walk evaluates about ``ef · M`` neighbours per hop; through a filter keeping a
        fraction s of the rows it needs about 1/s as many to meet as many allowed rows.
        ``GRAPH_ROW_COST`` converts one evaluation into exact-scan rows (measured below)."""
        ef = max(int(params.get("ef_search", self.ef_search)), k)
        return GRAPH_ROW_COST * ef * self.M * live / max(matched, 1)

    def _check_param_values(self, params: dict[str, Any]) -> None:
        if "ef_search" in params:
            positive_int_param(params, "ef_search", self.ef_search, MAX_EF)

    def _search(self, q: np.ndarray, k: int, params: dict[str, Any],
                allowed: np.ndarray | None, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        n = self._table.size
        if self._table.live_count == 0:
            return pad_results(q.shape[0], k)
        ef = max(positive_int_param(params, "ef_search", self.ef_search, MAX_EF), k)
        use_filter = allowed is not None or self._table.live_count < n
        mask = self._table.row_mask(allowed) if use_filter else _NO_MASK
        if ef > GRAPH_MAX_EF:  # a beam that wide costs more than the scan: answer exactly, and say so
            report["fallback_queries"] = report.get("fallback_queries", 0) + q.shape[0]
            return self._exact(q, k, self._table.row_mask(allowed))
        self._scratch(n)
        out_d = np.empty((q.shape[0], k), np.float32)
        out_ids = np.empty((q.shape[0], k), np.int64)
        kernel = kernels.search_serial if q.shape[0] < self.POOL_FREE_BELOW else kernels.search_batch
        kernel(self._x, q, self._nbr0, self._cnt0, self._nbr_up, self._cnt_up, self._up_off,
               self._entry, self._max_level, ef, k, self._code, self._normalize, self._table.labels, self._offset,
               self._visited, self._tags, mask, use_filter, out_d, out_ids)
        short = np.flatnonzero(out_ids[:, k - 1] < 0)
        if short.size:  # a walk reached fewer than k allowed rows: answer those queries exactly
            mask = mask if use_filter else self._table.row_mask(None)
            found = (out_ids[short] >= 0).sum(axis=1)
            short = short[found < min(k, int(np.count_nonzero(mask)))]
            if short.size:
                out_d[short], out_ids[short] = self._exact(q[short], k, mask)
                report["fallback_queries"] = report.get("fallback_queries", 0) + int(short.size)
        return out_d, out_ids

    def _exact(self, q: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return pad_results(q.shape[0], k)
        q = prepare(q, self.metric)
        with threads_for_batch(q.shape[0]):  # Index.search skips the limit for small batches (POOL_FREE_BELOW)
            return knn_over(self._flat, q, self._x[rows], self._table.labels[rows], k, self.metric)

    def _range_search(self, q: np.ndarray, radius: float, params: dict[str, Any],
                      allowed: np.ndarray | None) -> RangeResult:
        n = self._table.size
        mask = self._table.row_mask(allowed)
        x = self._x[:n]
        return self._flat.range_search(q, x, sq_norms(x), self._table.labels[:n], mask, radius, self.metric)

    def _remove(self, labels: np.ndarray) -> int:
        return int(self._table.remove(labels).size)

    @property
    def entry_point(self) -> int:
        """Label of the node searches start from (navigation continues through removed nodes)."""
        return int(self._table.labels[self._entry]) if self._entry >= 0 else -1

    # ------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        n = self._table.size
        arrays = {"vectors": self._x[:n], "nbr0": self._nbr0[:n], "cnt0": self._cnt0[:n],
                  "levels": self._levels[:n], "up_off": self._up_off[:n],
                  "nbr_up": self._nbr_up[: self._up_used], "cnt_up": self._cnt_up[: self._up_used],
                  **self._table.state()}
        meta = {"M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                "seed": self.seed, "entry": self._entry, "max_level": self._max_level}
        return arrays, meta

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        index = cls(meta["dim"], meta["metric"], M=meta["M"], ef_construction=meta["ef_construction"],
                    ef_search=meta["ef_search"], seed=meta["seed"], backend=backend)
        index._table = LabelTable(np.array(arrays["labels"]), np.array(arrays["deleted"]))
        for name in ("x", "nbr0", "cnt0", "levels", "up_off", "nbr_up", "cnt_up"):
            setattr(index, f"_{name}", arrays["vectors" if name == "x" else name])
        index._up_used = int(arrays["nbr_up"].shape[0])
        index._entry, index._max_level = int(meta["entry"]), int(meta["max_level"])
        return index


@register_spec(r"hnsw(?P<M>\d+)?", "HNSW32")
def _build(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> Index:
    if match.group("M"):
        spec_option(options, "M", int(match.group("M")), match.group(0))
    return HNSWIndex(dim, metric, **options)
