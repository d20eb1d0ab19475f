"""Flat scalar-quantized index (``"SQ8"``, ``"SQfp16"``): every row scanned, codes 1 or 2 bytes/dim.

The scan decodes blocks of codes to float32 and reuses the flat kernels (one BLAS GEMM
per block), so it runs at nearly the speed of an exact scan while the resident codes are
4× (SQ8) or 2× (fp16) smaller. Re-ranking on the kept full-precision copy (see
:mod:`shoal.index.quantized`) restores exact ordering among the top ``k × oversample``.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..engine.backend import Backend
from ..engine.metrics import prepare
from ..engine.validation import as_matrix
from ..quant.sq import KINDS, ScalarQuantizer
from .factory import register_spec, spec_option
from .options import Option
from .kernels.topk import sq_norms
from .quantized import QuantizedIndex, grow


#: SQ8's outlier trim: the quantile cut off each end of every dimension's range.
TRIM = Option(float, 0.0, 0.0, 0.5, open_high=True)


class _DecodedView:
    """Row blocks of codes, decoded on access: what ``blocked_knn`` slices as ``x[s:e]``."""

    def __init__(self, codes: np.ndarray, sq: ScalarQuantizer) -> None:
        self.codes = codes
        self.sq = sq
        self.shape = (codes.shape[0], sq.dim)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return self.sq.decode(self.codes[sl])


class SQIndex(QuantizedIndex):
    """Scalar quantizer over all rows; ``kind`` is ``"sq8"`` or ``"fp16"``."""

    KIND = "SQFLAT"
    OPTIONS = {**QuantizedIndex.OPTIONS, "kind": Option(str, "sq8", choices=KINDS), "trim": TRIM}
    kind: str
    trim: float

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)
        self.sq = ScalarQuantizer(self.dim, self.kind, trim=self.trim)
        #: Rows a Segment collects before training (ranges need a representative sample).
        self.min_train_size = 1 if self.sq.kind == "fp16" else 1000
        self._codes = np.zeros((0, self.dim), self.sq.code_dtype)
        self._dnorm = np.zeros(0, np.float32)

    @property
    def is_trained(self) -> bool:
        return self.sq.is_trained

    @property
    def code_size(self) -> int:
        return self.sq.code_size

    def train(self, vectors: Any) -> None:
        """Learn per-dimension ranges (sq8) from prepared (normalised for cosine) vectors."""
        self.sq.train(prepare(as_matrix(vectors, self.dim), self.metric))

    def _add_codes(self, x: np.ndarray, rows: np.ndarray) -> None:
        used = int(rows[0])
        self._codes = grow(self._codes, used, self._table.size)
        self._dnorm = grow(self._dnorm, used, self._table.size)
        self._codes[rows] = self.sq.encode(x)
        self._dnorm[rows] = sq_norms(self.sq.decode(self._codes[rows]))

    def _candidates(self, q, kk, params, rowmask):
        n = self._table.size
        return self._flat.knn(q, _DecodedView(self._codes[:n], self.sq), self._dnorm[:n],
                              np.arange(n, dtype=np.int64), None if rowmask.all() else rowmask, kk,
                              self._scan_metric)

    def _decode_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.sq.decode(self._codes[rows])

    def _compact_codes(self, live: np.ndarray) -> None:
        self._codes = np.ascontiguousarray(self._codes[live])
        self._dnorm = self._dnorm[live].copy()

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = self.sq.state()
        n = self._table.size
        return ({**self._base_state(), **arrays, "codes": self._codes[:n], "decoded_norms": self._dnorm[:n]},
                {**meta, "keep_vectors": self.keep_vectors})

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        index = cls(meta["dim"], meta["metric"], kind=meta["sq_kind"], trim=meta["sq_trim"],
                    keep_vectors=meta["keep_vectors"], backend=backend)
        index.sq = ScalarQuantizer.from_state(index.dim, meta, arrays)
        index._load_base(arrays)
        index._codes = arrays["codes"]
        index._dnorm = arrays["decoded_norms"]
        return index


@register_spec(r"sq(8|fp16|16)", "SQ8")
def _sq_spec(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> SQIndex:
    spec_option(options, "kind", "sq8" if match.group(1) == "8" else "fp16", match.group(0))
    return SQIndex(dim, metric, **options)
