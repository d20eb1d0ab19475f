"""GPU linear layers: float32 weights in device memory, cuBLAS matmuls
(the dense path is shared with numpy through the array module)."""
from __future__ import annotations

from .qlinear_numpy import DenseLinear, as_float32, make_linear

__all__ = ["DenseLinear", "as_float32", "make_linear"]
