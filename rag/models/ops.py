"""Array operations shared by the model implementations.

Everything takes and returns arrays of the caller's array module (``xp``:
numpy or CuPy) and stays float32: constants are Python floats so they never
promote a float32 array to float64 (numpy 2 promotes on np.float64 scalars).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any

Array = Any

# Abramowitz & Stegun 7.1.26 coefficients: |erf error| <= 1.5e-7, below float32 resolution
# of the GELU output, and it needs nothing beyond exp (numpy has no erf; CuPy's lives in cupyx).
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def erf(xp: ModuleType, x: Array) -> Array:
    """Error function of a float32 array, to 1.5e-7 absolute."""
    sign = xp.sign(x)
    a = xp.abs(x)
    t = 1.0 / (1.0 + _AS_P * a)
    a1, a2, a3, a4, a5 = _AS_A
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    return sign * (1.0 - poly * xp.exp(-a * a))


def gelu(xp: ModuleType, x: Array) -> Array:
    """Exact (erf) GELU, as BERT's ``hidden_act="gelu"``."""
    return 0.5 * x * (1.0 + erf(xp, x * (1.0 / math.sqrt(2.0))))


def gelu_tanh(xp: ModuleType, x: Array) -> Array:
    """GELU's tanh approximation (Gemma's ``gelu_pytorch_tanh``, ggml_gelu)."""
    return 0.5 * x * (1.0 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def silu(xp: ModuleType, x: Array) -> Array:
    return x / (1.0 + xp.exp(-x))


def layer_norm(xp: ModuleType, x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / xp.sqrt(var + eps) * weight + bias


def rms_norm(xp: ModuleType, x: Array, weight: Array, eps: float) -> Array:
    ms = (x * x).mean(axis=-1, keepdims=True)
    return x / xp.sqrt(ms + eps) * weight


def softmax(xp: ModuleType, x: Array, axis: int = -1) -> Array:
    """Numerically stable softmax; rows that are all -inf give zeros, not NaN."""
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    e = xp.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return e / xp.where(s > 0, s, 1.0)


def to_numpy(x: Array) -> Any:
    """Host copy of a numpy or CuPy array (numpy arrays pass through)."""
    return x.get() if hasattr(x, "get") else x
