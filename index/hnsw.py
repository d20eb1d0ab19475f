"""HNSW (Malkov & Yashunin): a layered proximity graph searched best-first.

* Graph in flat arrays: node ``r``'s level-0 block is one row of ``_g0`` (count, 2M int32
  neighbours, then its SQ8 code when the index walks on codes), so one walk step reads one
  contiguous block per neighbour; upper levels in a pooled ``(slots, M + 1)`` array addressed
  through ``up_off``. Full-precision vectors stay in ``_x`` for building and re-ranking.
* In-graph codes (``codes="sq8"``): the beam search evaluates neighbours on 8-bit codes
  (per-dimension offset and scale, fitted on the data and widened when later rows fall outside)
  and re-scores its final beam at full precision, so results carry exact distances. ``"auto"`` (the
  default) turns them on where they measured faster at equal recall (``AUTO_SQ8_MIN_DIM``); a saved
  index keeps the walk it was built with.
* Build in batches, both phases parallel (Numba ``prange``): new nodes search the current graph (on the
  codes a search walks, the beam then re-scored exactly) and choose their neighbours with the heuristic
  on exact distances (writing only their own rows), then
  the reverse links are applied grouped by the row they change, so no row needs a lock. A batch is
  at most 1/16 of the graph, so nodes rarely miss a peer from their own batch. Levels come from a generator
  seeded with ``(seed, rows so far)``: the same adds in the same order give the same graph,
  whatever the thread count.
* Concurrency: search kernels release the GIL and each call borrows its own visited scratch, so
  threads searching one index run in parallel. Adds and removals take a readers-writer lock
  exclusively (per insert batch): a search sees the graph before or after a batch, never during.
  Adds run one at a time (a renumbering moves rows).
* Locality: after an add that doubles a graph of ``REORDER_MIN_ROWS`` or more, rows are renumbered
  breadth-first over the level-0 links, so a node's neighbours sit a few rows apart.
* Filters and deletions go into the kernel as an allowed mask: the beam holds only allowed nodes
  and looks through disallowed ones two hops deep (ACORN spirit). When few rows are allowed, or
  traversal finds fewer than k, the index answers by exact search over the allowed rows, so k
  results are returned whenever k rows match.
"""
from __future__ import annotations

import math
import re
import threading
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
from ..engine.locks import RWLock

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
#: ``codes="auto"`` (the default) walks on SQ8 codes from this dimension up, on floats below. Same graph,
#: both walks, same run, QPS at R@10 0.95 interpolated, SQ8 over float (one query per call / batch, CPU time;
#: M=16, efC=200, 2 shared cores, round 5): GloVe-50 100k 0.63 / 0.66; clustered Gaussian 50k x 96-d
#: 0.78 / 0.69, 128-d 0.78 / 0.81, 192-d 0.94-0.95 / 1.00-1.02, 256-d 1.05-1.09 / 1.09-1.10 (two runs),
#: 384-d 1.20 / 1.24; MiniLM 384-d docstrings 20k 1.38 / 1.67. The float walk prefetches whole vectors and
#: needs no decode, so it wins while a vector is a few cache lines; SQ8 reads 4x fewer lines per step and
#: wins from ~200-256-d.
AUTO_SQ8_MIN_DIM = 256
#: Graphs from this many rows up are renumbered breadth-first after an add that at least doubles them
#: since the last renumbering (O(n·M) each time, amortised by the doubling).
REORDER_MIN_ROWS = 10_000
#: Code rows are padded to whole cache lines.
_LINE = 64
_NO_F32 = np.zeros(0, np.float32)


class HNSWIndex(Index):
    """Approximate k-NN over an HNSW graph; ``params={"ef_search": 64}`` per call."""

    KIND = "HNSW"
    VERSION = 2
    SEARCH_PARAMS = frozenset({"ef_search"})
    POOL_FREE_BELOW = 3  # one or two queries run search_serial
    OPTIONS = {"M": Option(int, 16, 2, MAX_M), "ef_construction": Option(int, 200, 1, MAX_EF),
               "ef_search": Option(int, 64, 1, MAX_EF), "seed": SEED,
               # "auto": SQ8 walk from AUTO_SQ8_MIN_DIM dimensions, float walk below (issue 21)
               "codes": Option(str, "auto", choices=("auto", "sq8", "none"))}
    M: int
    ef_construction: int
    ef_search: int
    seed: int
    codes: str

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)
        self._code = 0 if self.metric == "l2" else 1
        #: Added to kernel distances: the kernel's -dot becomes the cosine distance 1 - dot.
        self._offset = np.float32(1.0 if self.metric == "cosine" else 0.0)
        self._normalize = self.metric == "cosine"
        self._flat = load_kernels("shoal.index.kernels", "flat", self.backend)
        self._quant = self.codes == "sq8" or (self.codes == "auto" and self.dim >= AUTO_SQ8_MIN_DIM)
        #: Level-0 block: count + 2M links (int32), then the SQ8 code at byte ``_c0``.
        self._c0 = 4 * (1 + 2 * self.M)
        row_bytes = self._c0 + (self.dim if self._quant else 0)
        self._row_bytes = -(-row_bytes // _LINE) * _LINE if self._quant else row_bytes
        self._table = LabelTable()
        self._x = np.zeros((0, self.dim), np.float32)
        self._set_g0(np.zeros((0, self._row_bytes), np.uint8))
        self._levels = np.zeros(0, np.int32)
        self._up_off = np.zeros(0, np.int64)
        self._up = np.zeros((0, self.M + 1), np.int32)
        self._up_used = 0
        self._sq_lo = _NO_F32
        self._sq_scale = _NO_F32
        self._entry = -1
        self._max_level = -1
        self._lock = RWLock()  # searches share it, adds and removals hold it alone
        self._adding = threading.Lock()  # one add at a time: a renumbering moves the rows another add holds
        self._ordered = 0  # rows at the last renumbering
        #: Visited scratch lent to one call at a time: one-row arrays (serial) and pool-wide ones (batch).
        self._scratch: dict[int, list[np.ndarray]] = {1: [], numba.config.NUMBA_NUM_THREADS: []}

    @property
    def walks_codes(self) -> bool:
        """Whether searches walk SQ8 codes (``codes="sq8"``, or ``"auto"`` from ``AUTO_SQ8_MIN_DIM``) and read
        the full vectors only to re-rank; a float walk reads them at every step."""
        return self._quant

    def _set_g0(self, g0: np.ndarray) -> None:
        self._g0 = g0
        self._links = g0.view(np.int32)  # (rows, row_bytes / 4): column 0 count, then the links

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

    def reserve(self, n: int) -> None:
        with self._adding, self._lock.write():
            self._reserve(n, self._up_used, exact=True)

    def _reserve(self, n_rows: int, n_up: int, exact: bool = False) -> None:
        def grow(arr: np.ndarray, n: int) -> np.ndarray:
            if n <= arr.shape[0] and arr.flags.writeable:
                return arr
            new = np.zeros((n if exact else max(n, 2 * arr.shape[0], 64),) + arr.shape[1:], arr.dtype)
            new[: arr.shape[0]] = arr
            return new

        self._x = grow(self._x, n_rows)
        self._set_g0(grow(self._g0, n_rows))
        self._levels = grow(self._levels, n_rows)
        self._up_off = grow(self._up_off, n_rows)
        self._up = grow(self._up, n_up)

    def _add(self, x: np.ndarray, labels: np.ndarray) -> None:
        with self._adding:
            self._append(x, labels)
            n = self._table.size
            if n >= REORDER_MIN_ROWS and n >= 2 * self._ordered:
                with self._lock.write():
                    self._reorder()

    def _append(self, x: np.ndarray, labels: np.ndarray) -> None:
        """Give the rows slots (levels, upper-level rows, codes), then link them batch by batch."""
        with self._lock.write():
            rows, _ = self._table.append(labels)
            start = int(rows[0])
            levels = self._draw_levels(start, rows.size)
            n_up = self._up_used + int(levels.sum())
            self._reserve(start + rows.size, n_up)
            self._x[rows] = x
            self._levels[rows] = levels
            self._links[rows, 0] = 0
            offsets = self._up_used + np.concatenate([[0], np.cumsum(levels)[:-1]]).astype(np.int64)
            self._up_off[rows] = offsets
            self._up[self._up_used:n_up, 0] = 0
            self._up_used = n_up
            if self._quant:
                self._encode(start, start + rows.size)
        self._insert(rows)

    def _reorder(self) -> None:
        """Renumber rows breadth-first from the entry point, so the nodes one walk step reads (a node's
        neighbours) sit near each other in ``_x`` and ``_g0``: fewer cache lines and pages per step.
        Every per-row array moves together; the graph and the labels are unchanged."""
        n = self._table.size
        order = kernels.bfs_order(self._links, n, self._entry)
        inv = np.empty(n, np.int64)
        inv[order] = np.arange(n)
        for arr in (self._x, self._g0, self._levels, self._up_off):
            arr[:n] = arr[order]
        kernels.renumber_links(self._links, n, inv)
        kernels.renumber_links(self._up, self._up_used, inv)
        table = self._table
        self._table = LabelTable(table.labels[:n][order], table.deleted[:n][order])
        self._entry = int(inv[self._entry])
        self._ordered = n

    def _encode(self, start: int, stop: int) -> None:
        """SQ8 codes of rows [start, stop); widens the per-dimension range (and re-encodes every
        row) when the new rows fall outside it. Rows beyond the range would clip: the walk would
        misjudge them, the exact re-rank would not."""
        new = self._x[start:stop]
        lo, hi = new.min(axis=0), new.max(axis=0)
        if self._sq_lo.size and np.all(lo >= self._sq_lo) and np.all(hi <= self._sq_lo + 255 * self._sq_scale):
            kernels.encode_sq8(new, self._sq_lo, self._sq_scale, self._g0[start:stop], self._c0)
            return
        if self._sq_lo.size:  # widen by a margin, so a slowly drifting stream rarely re-encodes
            old_hi = self._sq_lo + 255 * self._sq_scale
            lo, hi = np.minimum(lo, self._sq_lo), np.maximum(hi, old_hi)
            margin = (hi - lo) / 32
            lo, hi = lo - margin, hi + margin
        self._sq_lo = lo.astype(np.float32)
        self._sq_scale = np.maximum((hi - lo) / 255, np.float32(1e-30)).astype(np.float32)
        kernels.encode_sq8(self._x[:stop], self._sq_lo, self._sq_scale, self._g0[:stop], self._c0)

    def _walk(self) -> tuple[np.ndarray, int]:
        """What the kernels walk on, and where a code starts in its row: the uint8 graph rows (the kernels
        walk on codes when given uint8) or the float vectors."""
        return (self._g0, self._c0) if self._quant else (self._x, 0)

    def _visited(self, rows: int) -> np.ndarray:
        """Scratch for one call: ``rows`` visited rows over every node slot plus the epoch tag."""
        width = self._x.shape[0] + 1
        pool = self._scratch.get(rows)
        if pool is None:
            pool = self._scratch.setdefault(rows, [])
        while True:
            try:
                vis = pool.pop()  # atomic: two threads never get the same one
            except IndexError:  # empty, or another thread took the last one
                return np.zeros((rows, width), kernels.VISITED_DTYPE)
            if vis.shape[1] >= width:
                return vis

    def _return(self, vis: np.ndarray) -> None:
        self._scratch[vis.shape[0]].append(vis)

    def _insert(self, rows: np.ndarray) -> None:
        from tqdm.auto import tqdm

        pos = 0
        bar = tqdm(total=rows.size, desc="HNSW build", unit="vec", disable=rows.size < 50_000, leave=False)
        vis = self._visited(numba.config.NUMBA_NUM_THREADS)
        while pos < rows.size:
            built = int(rows[pos])
            size = 1 if built < SERIAL_PREFIX else min(MAX_BATCH, max(1, built // BATCH_DIVISOR))
            batch = rows[pos:pos + size]
            with self._lock.write():
                if self._entry < 0:
                    self._entry = int(batch[0])
                    self._max_level = int(self._levels[self._entry])
                    batch = batch[:1]
                else:
                    self._insert_batch(batch, vis)
            pos += batch.size
            bar.update(batch.size)
        self._return(vis)
        bar.close()

    def _insert_batch(self, batch: np.ndarray, vis: np.ndarray) -> None:
        levels = self._levels[batch]
        stored = np.minimum(levels, self._max_level) + 1
        cand_off = np.concatenate([[0], np.cumsum(stored)[:-1]]).astype(np.int64)
        sel_ids = np.empty((int(stored.sum()), self.M), np.int64)
        sel_cnt = np.zeros(sel_ids.shape[0], np.int64)
        codes, c0 = self._walk()
        kernels.link_forward(self._x, codes, c0, self._sq_lo, self._sq_scale, batch, levels, self._links, self._up,
                             self._up_off, self._entry, self._max_level, self.M, self._code, vis, self.ef_construction,
                             cand_off, sel_ids, sel_cnt)
        kernels.link_reverse(self._x, batch, levels, self._links, self._up, self._up_off, self._max_level, self.M,
                             self._code, cand_off, sel_ids, sel_cnt, 8 * numba.get_num_threads())
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
        ef = max(params.get("ef_search", self.ef_search), k)  # checked by search / the planner (search_checked)
        with self._lock.read():
            return self._search_locked(q, k, ef, allowed, report)

    def _search_locked(self, q: np.ndarray, k: int, ef: int, allowed: np.ndarray | None,
                       report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        table = self._table
        n, live = table.size, table.live_count
        if live == 0:
            return pad_results(q.shape[0], k)
        use_filter = allowed is not None or live < n
        mask = table.row_mask(allowed) if use_filter else _NO_MASK
        if ef > GRAPH_MAX_EF:  # a beam that wide costs more than the scan: answer exactly, and say so
            report["fallback_queries"] = report.get("fallback_queries", 0) + q.shape[0]
            return self._exact(q, k, table.row_mask(allowed))
        serial = q.shape[0] < self.POOL_FREE_BELOW
        vis = self._visited(1 if serial else numba.config.NUMBA_NUM_THREADS)
        out_d = np.empty((q.shape[0], k), np.float32)
        out_ids = np.empty((q.shape[0], k), np.int64)
        kernel = kernels.search_serial if serial else kernels.search_batch
        try:
            codes, c0 = self._walk()
            short = kernel(self._x, codes, c0, self._sq_lo, self._sq_scale, q, self._links,
                           self._up, self._up_off, self._entry, self._max_level, ef, k, self._code, self._normalize,
                           table.labels, self._offset, vis, mask, use_filter, out_d, out_ids)
        finally:
            self._return(vis)
        if short:  # a walk reached fewer than k allowed rows: answer those queries exactly
            self._fall_back(q, k, mask if use_filter else table.row_mask(None), out_d, out_ids, report)
        return out_d, out_ids

    def _fall_back(self, q: np.ndarray, k: int, mask: np.ndarray, out_d: np.ndarray, out_ids: np.ndarray,
                   report: dict[str, Any]) -> None:
        short = np.flatnonzero(out_ids[:, k - 1] < 0)
        found = (out_ids[short] >= 0).sum(axis=1)
        short = short[found < min(k, int(np.count_nonzero(mask)))]
        if short.size:
            out_d[short], out_ids[short] = self._exact(q[short], k, mask)
            report["fallback_queries"] = report.get("fallback_queries", 0) + int(short.size)

    def _exact(self, q: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return pad_results(q.shape[0], k)
        q = prepare(q, self.metric)
        with threads_for_batch(q.shape[0]):  # Index.search skips the limit for small batches (POOL_FREE_BELOW)
            return knn_over(self._flat, q, self._x[rows], self._table.labels[rows], k, self.metric)

    def _range_search(self, q: np.ndarray, radius: float, params: dict[str, Any],
                      allowed: np.ndarray | None) -> RangeResult:
        with self._lock.read():
            n = self._table.size
            mask = self._table.row_mask(allowed)
            x = self._x[:n]
            return self._flat.range_search(q, x, sq_norms(x), self._table.labels[:n], mask, radius, self.metric)

    def _remove(self, labels: np.ndarray) -> int:
        with self._lock.write():
            return int(self._table.remove(labels).size)

    @property
    def entry_point(self) -> int:
        """Label of the node searches start from (navigation continues through removed nodes)."""
        return int(self._table.labels[self._entry]) if self._entry >= 0 else -1

    # ------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        with self._lock.read():
            n = self._table.size
            arrays = {"vectors": self._x[:n], "graph0": self._g0[:n], "levels": self._levels[:n],
                      "up_off": self._up_off[:n], "up": self._up[: self._up_used],
                      "sq_lo": self._sq_lo, "sq_scale": self._sq_scale, **self._table.state()}
            meta = {"M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                    "seed": self.seed, "codes": self.codes, "quantized": self._quant,
                    "entry": self._entry, "max_level": self._max_level}
            return arrays, meta

    @classmethod
    def SUPPORTED_VERSIONS(cls) -> tuple[int, ...]:
        return (1, 2)

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        # version 1 (no in-graph codes, separate count arrays) loads as a float graph
        codes = ("sq8" if meta["quantized"] else "none") if version >= 2 else "none"
        index = cls(meta["dim"], meta["metric"], M=meta["M"], ef_construction=meta["ef_construction"],
                    ef_search=meta["ef_search"], seed=meta["seed"], codes=codes, backend=backend)
        if version >= 2:
            index.codes = meta["codes"]
        index._table = LabelTable(np.array(arrays["labels"]), np.array(arrays["deleted"]))
        index._x, index._levels, index._up_off = arrays["vectors"], arrays["levels"], arrays["up_off"]
        index._entry, index._max_level = int(meta["entry"]), int(meta["max_level"])
        if version >= 2:
            index._set_g0(arrays["graph0"])
            index._up = arrays["up"]
            index._sq_lo, index._sq_scale = np.array(arrays["sq_lo"]), np.array(arrays["sq_scale"])
        else:
            index._from_v1(arrays)
        index._up_used = int(index._up.shape[0])
        index._ordered = index._table.size
        return index

    def _from_v1(self, arrays: dict[str, np.ndarray]) -> None:
        """Lay a version-1 graph (links and counts in separate arrays) out in blocks, with codes if on."""
        n = arrays["vectors"].shape[0]
        g0 = np.zeros((n, self._row_bytes), np.uint8)
        links = g0.view(np.int32)
        links[:, 0] = arrays["cnt0"]
        links[:, 1:1 + 2 * self.M] = arrays["nbr0"]
        self._set_g0(g0)
        up = np.zeros((arrays["nbr_up"].shape[0], self.M + 1), np.int32)
        up[:, 0] = arrays["cnt_up"]
        up[:, 1:] = arrays["nbr_up"]
        self._up = up
        if self._quant and n:
            self._encode(0, n)


@register_spec(r"hnsw(?P<M>\d+)?", "HNSW32")
def _build(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> Index:
    if match.group("M"):
        spec_option(options, "M", int(match.group("M")), match.group(0))
    return HNSWIndex(dim, metric, **options)
