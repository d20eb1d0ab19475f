"""Per-posting scoring data derived from one ``InvertedIndex``, cached for the kernels (``bm25_*``).

A posting's contribution to a score is ``weight * impact``. For BM25 the impact is
Lucene's tf part ``tf / (tf + k1 (1 - b + b dl / avgdl))``: it depends on the live
collection's avgdl, so the cache is keyed by ``(k1, b, avgdl)`` and any write that moves
avgdl invalidates it; lists are then recomputed when a query next reads them (one pass
over the list, what scoring it once would cost). Scores stay exactly those of the live
collection, where bm25s fixes idf and avgdl into the scores it precomputes at index time.
For sparse vectors the impact is the stored value. Per list the largest and smallest
impact bound the contribution for MaxScore pruning.

Lists in at least 1/``DENSE_FRACTION`` of the rows also get a dense map row -> position
in the list (int32, -1 where absent), built once (it does not depend on avgdl): the
pruned kernel looks a candidate up in such a list in O(1) instead of merging with it.
Memory: 8 bytes per posting for the impacts, 4 per row per dense list (at most 4x the
list's own 8 bytes per posting). The index is immutable, so the cache lives as long as it.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

#: A list holding at least 1/DENSE_FRACTION of the rows gets a dense row -> posting map.
DENSE_FRACTION = 8


class ImpactCache:
    """Impacts, list bounds and dense maps of one index (see the module docstring); thread-safe."""

    def __init__(self, offsets: np.ndarray, rows: np.ndarray, values: np.ndarray, doclen: np.ndarray) -> None:
        self._offsets, self._rows, self._values, self._doclen = offsets, rows, values, doclen
        terms = offsets.shape[0] - 1
        self._impacts = np.empty(rows.shape[0])
        self._max = np.zeros(terms)
        self._min = np.zeros(terms)
        # per list: impacts valid under ``_params`` and dense map made if due; one more slot, always
        # True, is what an absent term (-1) reads
        self._ready = np.zeros(terms + 1, bool)
        self._ready[terms] = True
        self._params: tuple[float, ...] | None = None
        self._slot = np.full(terms, -1, np.int32)
        self._dense = np.zeros((0, doclen.shape[0]), np.int32)
        self._handout = (self._impacts, self._max, self._min, self._slot, self._dense)
        self._lock = threading.Lock()

    def prepare(self, terms: np.ndarray, bm25: tuple[float, float, float] | None, kernels: Any
                ) -> tuple[np.ndarray, ...]:
        """``(impacts, max, min, dense_slot, dense_pos)`` valid for the lists of ``terms`` (local term
        numbers, -1 for none) under ``bm25 = (k1, b, avgdl)`` (None: sparse values). The arrays handed
        out are never resized or re-slotted in place, so a kernel running beside a later ``prepare``
        reads a consistent set.

        Once a query's lists are ready this takes no lock: ``_ready`` is only set after the lists are
        written, and the parameters change only with a write to the collection, which waits for every
        search to leave (so no search reads lists being recomputed for another avgdl)."""
        params = () if bm25 is None else bm25
        if self._params == params and self._ready[terms].all():
            return self._handout
        with self._lock:
            if self._params != params:
                self._ready[:-1] = False
                self._params = params
                if bm25 is None:
                    self._impacts[:] = self._values
                    kernels.list_bounds(self._offsets, self._impacts, self._max, self._min)
            need = np.unique(terms[~self._ready[terms]])
            if bm25 is not None and need.size:
                kernels.bm25_impacts(self._offsets, self._rows, self._values, self._doclen, need, *bm25,
                                     self._impacts, self._max, self._min)
            self._add_dense(need, kernels)
            self._ready[need] = True
            return self._handout

    def _add_dense(self, terms: np.ndarray, kernels: Any) -> None:
        n = self._doclen.shape[0]
        df = self._offsets[terms + 1] - self._offsets[terms]
        missing = (df * DENSE_FRACTION >= n) & (self._slot[terms] < 0)
        if not missing.any():
            return
        new = terms[missing]
        first = self._dense.shape[0]
        dense = np.empty((first + new.size, n), np.int32)
        dense[:first] = self._dense
        slots = np.arange(first, first + new.size, dtype=np.int32)
        kernels.dense_positions(self._offsets, self._rows, new, slots, dense)
        slot = self._slot.copy()
        slot[new] = slots
        self._dense, self._slot = dense, slot
        self._handout = (self._impacts, self._max, self._min, slot, dense)
