"""Dense float32 linear layers: every weight is dequantised once at load."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import numpy as np

Array = Any


def as_float32(weight: Any) -> np.ndarray:
    """(out, in) float32 from a float array or a quantised GGUF tensor (anything with ``dequantize()``)."""
    if hasattr(weight, "dequantize"):
        return weight.dequantize()
    return np.asarray(weight, dtype=np.float32)


class DenseLinear:
    """y = x @ W.T with W stored transposed, (in, out), contiguous on the device."""

    def __init__(self, weights: Sequence[Any], xp: ModuleType) -> None:
        w = np.concatenate([as_float32(x) for x in weights]) if len(weights) > 1 else as_float32(weights[0])
        self.xp = xp
        self.w_t = xp.asarray(np.ascontiguousarray(w.T))
        self.out_features, self.in_features = w.shape

    def __call__(self, x: Array) -> Array:
        return x @ self.w_t

    def rows(self, ids: Array) -> Array:
        """Rows of W (an embedding lookup when W is the embedding matrix)."""
        return self.w_t.T[ids]

    @property
    def nbytes(self) -> int:
        return int(self.w_t.nbytes)


def make_linear(weights: Sequence[Any], xp: ModuleType) -> DenseLinear:
    """One linear layer whose output rows are the given weights' rows, concatenated (fused Q/K/V, gate/up)."""
    return DenseLinear(weights, xp)
