"""GPU attention: the array-module kernels of attention_numpy run on CuPy as they are."""
from __future__ import annotations

from .attention_numpy import attend_decode, attend_prefill

__all__ = ["attend_decode", "attend_prefill"]
