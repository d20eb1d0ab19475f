"""How a Llama forward pass does its arithmetic: the one seam between the
model's structure (llama.py) and the kernels.

- ``float32`` (default): float32 activations, attention and KV cache. On the
  numba backend (the CPU default) Q4_1/Q8_0 matrices stay in their blocks and
  Numba kernels multiply them (kernels/qlinear_numba.py: ~4x fewer bytes per
  token), and a decode step runs all layers in one call (kernels/decode_numba.py);
  on numpy and CuPy weights are dequantised once for BLAS/cuBLAS.
- ``llama.cpp``: llama.cpp's CPU arithmetic bit for bit (Q8 activations over
  the quantised blocks, f16 KV cache, its reduction orders and exp), so greedy
  decoding gives llama.cpp's tokens; numpy only, and several times slower.
  See shoal.rag.kernels.ggml_numpy for why exactness takes all of that.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ...engine.backend import Backend, load_kernels
from ...engine.errors import InvalidArgumentError
from .ops import gelu_tanh, rms_norm, silu

if TYPE_CHECKING:
    from .llama import LlamaConfig

Array = Any


class FloatNumerics:
    """float32 everywhere on the backend's array module."""

    name = "float32"

    def __init__(self, config: "LlamaConfig", backend: Backend) -> None:
        self.config = config
        self.xp = backend.xp
        self.kv_dtype = self.xp.float32
        self._kernels = load_kernels("shoal.rag.kernels", "qlinear", backend)
        self._attention = load_kernels("shoal.rag.kernels", "attention", backend)
        self._decode = load_kernels("shoal.rag.kernels", "decode", backend)
        self._inv_freq = {base: base ** (-np.arange(0, config.head_dim, 2, dtype=np.float64) / config.head_dim)
                          for base in (config.rope_base, config.rope_base_local)}

    def linear(self, weights: Sequence[Any]) -> Any:
        return self._kernels.make_linear(weights, self.xp)

    def fused_decoder(self, layers: Sequence[dict[str, Any]]) -> Any | None:
        """A callable running every layer of a decode step at once (kernels/decode_numba.py), or None."""
        return self._decode.make_fused_decoder(self.config, layers)

    def rms_norm(self, x: Array, weight: Array) -> Array:
        return rms_norm(self.xp, x, weight, self.config.rms_eps)

    def glu(self, gate: Array, up: Array) -> Array:
        """The gated MLP's activation: SwiGLU (Llama) or GeGLU with tanh GELU (Gemma)."""
        act = gelu_tanh if self.config.activation == "gelu_tanh" else silu
        return act(self.xp, gate) * up

    def rope_tables(self, positions: np.ndarray, base: float) -> tuple[Array, Array]:
        """cos/sin (T, head_dim/2) float32 for integer positions (angles computed in float64)."""
        ang = positions.astype(np.float64)[:, None] * self._inv_freq[base][None, :]
        return self.xp.asarray(np.cos(ang).astype(np.float32)), self.xp.asarray(np.sin(ang).astype(np.float32))

    def rope(self, x: Array, cos: Array, sin: Array) -> Array:
        """Rotate pairs of x (T, heads, head_dim) by the per-position angles: adjacent pairs
        (x[2i], x[2i+1]) for Llama GGUF files, (x[i], x[i + head_dim/2]) with ``rope_neox`` (Gemma)."""
        half = x.shape[-1] // 2
        pairs = (slice(0, half), slice(half, None)) if self.config.rope_neox else (slice(0, None, 2), slice(1, None, 2))
        x0, x1 = x[..., pairs[0]], x[..., pairs[1]]
        c, s = cos[:, None, :], sin[:, None, :]
        out = self.xp.empty_like(x)
        out[..., pairs[0]] = x0 * c - x1 * s
        out[..., pairs[1]] = x0 * s + x1 * c
        return out

    def attend_prefill(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int, window: int = 0) -> Array:
        """Causal attention of T new queries (positions start..start+T-1) over S = start+T cached keys
        (with ``window``, each query over its last ``window`` positions only)."""
        c = self.config
        return self._attention.attend_prefill(self.xp, c.num_heads, c.num_kv_heads, c.head_dim, q, kc, vc, slots, start, window)

    def attend_decode(self, q: Array, kc: Array, vc: Array, slot_lists: list[np.ndarray]) -> Array:
        """One query per sequence, B sequences, each over its own cached keys."""
        c = self.config
        return self._attention.attend_decode(self.xp, c.num_heads, c.num_kv_heads, c.head_dim, q, kc, vc, slot_lists)


class LlamaCppNumerics:
    """llama.cpp's x86 CPU arithmetic (numpy): every sequence computed as llama.cpp would compute it alone.

    A prompt (two or more new tokens) takes llama.cpp's batch path, a single
    new token its decode path, so results do not depend on which other
    requests share the step.
    """

    name = "llama.cpp"

    def __init__(self, config: "LlamaConfig", backend: Backend) -> None:
        if backend.name == "cupy":
            raise InvalidArgumentError("numerics='llama.cpp' reproduces llama.cpp's CPU kernels and runs on numpy only")
        if not config.plain_llama:
            raise InvalidArgumentError("numerics='llama.cpp' reproduces llama.cpp's Llama graph only; use numerics='float32' for Gemma")
        from ..kernels import ggml_numpy

        self.config = config
        self.xp = np
        self.kv_dtype = np.float16  # llama.cpp's default KV cache type
        self._k = ggml_numpy
        self._rope = ggml_numpy.RopeTables(config.head_dim, config.rope_base)

    def linear(self, weights: Sequence[Any]) -> Any:
        return self._k.GGMLLinear(weights)

    def fused_decoder(self, layers: Sequence[dict[str, Any]]) -> None:
        return None  # every operation keeps llama.cpp's own arithmetic

    def rms_norm(self, x: Array, weight: Array) -> Array:
        return self._k.rms_norm(x, weight, self.config.rms_eps)

    def glu(self, gate: Array, up: Array) -> Array:
        return self._k.swiglu(gate, up)

    def rope_tables(self, positions: np.ndarray, base: float) -> tuple[Array, Array]:
        return self._rope(positions)  # the one base of a Llama model (RopeTables was built with it)

    def rope(self, x: Array, cos: Array, sin: Array) -> Array:
        return self._k.rope(x, cos, sin)

    def _attend(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int) -> Array:
        k, v = kc[slots].astype(np.float32), vc[slots].astype(np.float32)
        return self._k.attention(q, k, v, start, self.config.num_kv_heads, tiled=q.shape[0] > 1)

    def attend_prefill(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int, window: int = 0) -> Array:
        c = self.config  # window is always 0: Llama has no sliding-window layers (checked at construction)
        return self._attend(q.reshape(-1, c.num_heads, c.head_dim), kc, vc, slots, start)

    def attend_decode(self, q: Array, kc: Array, vc: Array, slot_lists: list[np.ndarray]) -> Array:
        c = self.config
        rows = [self._attend(q[i : i + 1].reshape(1, c.num_heads, c.head_dim), kc, vc, s, len(s) - 1) for i, s in enumerate(slot_lists)]
        return np.concatenate(rows)


_BY_NAME = {cls.name: cls for cls in (FloatNumerics, LlamaCppNumerics)}
NUMERICS = tuple(_BY_NAME)


def make_numerics(name: str, config: "LlamaConfig", backend: Backend) -> FloatNumerics | LlamaCppNumerics:
    if name not in _BY_NAME:
        raise InvalidArgumentError(f"numerics must be one of {', '.join(NUMERICS)}, got {name!r}")
    return _BY_NAME[name](config, backend)
