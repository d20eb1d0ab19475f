"""Flat product-quantized index (``"PQ<m>"``): ``m`` bytes per vector, every row scanned by ADC.

The scan is the IVF-PQ kernel with a single list (centroid 0) holding every row, so the
two share one implementation. Re-ranking on the kept full-precision copy (see
:mod:`shoal.index.quantized`) is what turns PQ's coarse distances back into good recall.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..engine.backend import Backend, load_kernels
from ..engine.metrics import prepare
from ..engine.validation import as_matrix
from ..quant.pq import ProductQuantizer
from .factory import register_spec, spec_option
from .options import SEED, Option
from .quantized import QuantizedIndex, grow

#: Rows a Segment collects before training PQ (16 per sub-centroid).
PQ_MIN_TRAIN = 4096
#: Largest number of PQ sub-quantizers (bytes per code); it must also divide the dimension.
MAX_PQ_M = 4096


def residual_tables(pq: ProductQuantizer, centroids: np.ndarray) -> np.ndarray:
    """IVF-PQ l2: ``|r|² + 2 c·r`` per (list, sub-centroid r), so a probe just adds it to ``-2 q·r``."""
    cents = pq.centroids  # (m, ksub, dsub)
    cross = np.einsum("lsd,skd->lsk", centroids.reshape(centroids.shape[0], pq.m, pq.dsub), cents)
    return ((cents ** 2).sum(-1)[None] + 2.0 * cross).astype(np.float32)


class PQIndex(QuantizedIndex):
    """Product quantizer over all rows."""

    KIND = "PQFLAT"
    min_train_size = PQ_MIN_TRAIN
    OPTIONS = {**QuantizedIndex.OPTIONS, "m": Option(int, 8, 1, MAX_PQ_M), "seed": SEED}
    m: int
    seed: int

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)
        self.pq = ProductQuantizer(self.dim, self.m, seed=self.seed, backend=self.backend)
        self._ivf = load_kernels("shoal.index.kernels", "ivf", self.backend)
        self._codes = np.zeros((0, self.pq.m), np.uint8)

    @property
    def is_trained(self) -> bool:
        return self.pq.is_trained

    @property
    def code_size(self) -> int:
        return self.pq.code_size

    def train(self, vectors: Any) -> None:
        """Learn the sub-codebooks from prepared (normalised for cosine) vectors."""
        self.pq.train(prepare(as_matrix(vectors, self.dim), self.metric))

    def _add_codes(self, x: np.ndarray, rows: np.ndarray) -> None:
        self._codes = grow(self._codes, int(rows[0]), self._table.size)
        self._codes[rows] = self.pq.encode(x)

    def _candidates(self, q, kk, params, rowmask):
        n = self._table.size
        zero = np.zeros((1, self.dim), np.float32)  # one list, centroid 0: residuals are the vectors
        l2 = self._scan_metric == "l2"
        ltab = residual_tables(self.pq, zero) if l2 else zero[:, :, None]
        return self._ivf.scan_pq(q, zero, self._metric_code, 1, np.zeros(1, np.int64), np.full(1, n, np.int64),
                                 np.arange(n, dtype=np.int64), self._codes[:n], self.pq.centroids, ltab,
                                 l2, rowmask, kk)

    def _decode_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.pq.decode(self._codes[rows])

    def _compact_codes(self, live: np.ndarray) -> None:
        self._codes = np.ascontiguousarray(self._codes[live])

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = self.pq.state()
        return ({**self._base_state(), **arrays, "codes": self._codes[: self._table.size]},
                {**meta, "keep_vectors": self.keep_vectors})

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        index = cls(meta["dim"], meta["metric"], m=meta["pq_m"], keep_vectors=meta["keep_vectors"], backend=backend)
        index.pq = ProductQuantizer.from_state(index.dim, meta, arrays, backend=index.backend)
        index._load_base(arrays)
        index._codes = arrays["codes"]
        return index


@register_spec(r"pq(\d+)", "PQ16")
def _pq_spec(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> PQIndex:
    spec_option(options, "m", int(match.group(1)), match.group(0))
    return PQIndex(dim, metric, **options)
