"""No fused decode step on numpy or CuPy: their decode runs the model's per-operation
path (a few large array calls per layer, what those modules run well). The Numba
one-call step is decode_numba."""
from __future__ import annotations

from typing import Any, Sequence


def make_fused_decoder(config: Any, layers: Sequence[dict[str, Any]]) -> None:
    return None
