"""How a Llama forward pass does its arithmetic: the one seam between the
model's structure (llama.py) and the kernels.

- ``float32`` (default): weights dequantised once, BLAS/cuBLAS matmuls,
  float32 attention and KV cache; fastest, on numpy or CuPy.
- ``llama.cpp``: llama.cpp's CPU arithmetic bit for bit (Q8 activations over
  the quantised blocks, f16 KV cache, its reduction orders and exp), so greedy
  decoding gives llama.cpp's tokens; numpy only, and several times slower.
  See shoal.rag.kernels.ggml_numpy for why exactness takes all of that.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ...engine.backend import Backend, load_kernels
from ...engine.errors import InvalidArgumentError
from .ops import rms_norm, silu, softmax

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
        self._inv_freq = config.rope_base ** (-np.arange(0, config.head_dim, 2, dtype=np.float64) / config.head_dim)

    def linear(self, weights: Sequence[Any]) -> Any:
        return self._kernels.make_linear(weights, self.xp)

    def rms_norm(self, x: Array, weight: Array) -> Array:
        return rms_norm(self.xp, x, weight, self.config.rms_eps)

    def swiglu(self, gate: Array, up: Array) -> Array:
        return silu(self.xp, gate) * up

    def rope_tables(self, positions: np.ndarray) -> tuple[Array, Array]:
        """cos/sin (T, head_dim/2) float32 for integer positions (angles computed in float64)."""
        ang = positions.astype(np.float64)[:, None] * self._inv_freq[None, :]
        return self.xp.asarray(np.cos(ang).astype(np.float32)), self.xp.asarray(np.sin(ang).astype(np.float32))

    def rope(self, x: Array, cos: Array, sin: Array) -> Array:
        """Rotate adjacent pairs of x (T, heads, head_dim) by the per-position angles."""
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        out = self.xp.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    def attend_prefill(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int) -> Array:
        """Causal attention of T new queries (positions start..start+T-1) over S = start+T cached keys."""
        xp, c = self.xp, self.config
        t = q.shape[0]
        g = c.num_heads // c.num_kv_heads
        idx = xp.asarray(slots)
        k = kc[idx].transpose(1, 2, 0)  # (kv, hd, S)
        v = vc[idx].transpose(1, 0, 2)  # (kv, S, hd)
        qh = q.reshape(t, c.num_kv_heads, g, c.head_dim).transpose(1, 2, 0, 3).reshape(c.num_kv_heads, g * t, c.head_dim)
        scores = (qh @ k) * (1.0 / math.sqrt(c.head_dim))  # (kv, g*T, S)
        qpos = np.tile(np.arange(start, start + t), g)
        allowed = np.arange(start + t)[None, :] <= qpos[:, None]
        scores = xp.where(xp.asarray(allowed)[None], scores, -xp.inf)
        out = softmax(xp, scores) @ v  # (kv, g*T, hd)
        return out.reshape(c.num_kv_heads, g, t, c.head_dim).transpose(2, 0, 1, 3).reshape(t, c.num_heads * c.head_dim)

    def attend_decode(self, q: Array, kc: Array, vc: Array, slot_lists: list[np.ndarray]) -> Array:
        """One query per sequence, B sequences, keys padded to the longest context and masked."""
        xp, c = self.xp, self.config
        b = q.shape[0]
        g = c.num_heads // c.num_kv_heads
        lens = np.array([len(s) for s in slot_lists])
        width = int(lens.max())
        idx = np.zeros((b, width), dtype=np.int64)
        for i, s in enumerate(slot_lists):
            idx[i, : len(s)] = s
        valid = xp.asarray(np.arange(width)[None, :] < lens[:, None])  # (B, S)
        didx = xp.asarray(idx)
        k = kc[didx].transpose(0, 2, 3, 1)  # (B, kv, hd, S)
        v = vc[didx].transpose(0, 2, 1, 3)  # (B, kv, S, hd)
        qh = q.reshape(b, c.num_kv_heads, g, c.head_dim)
        scores = (qh @ k) * (1.0 / math.sqrt(c.head_dim))  # (B, kv, g, S)
        scores = xp.where(valid[:, None, None, :], scores, -xp.inf)
        out = softmax(xp, scores) @ v  # (B, kv, g, hd)
        return out.reshape(b, c.num_heads * c.head_dim)


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
        from ..kernels import ggml_numpy

        self.config = config
        self.xp = np
        self.kv_dtype = np.float16  # llama.cpp's default KV cache type
        self._k = ggml_numpy
        self._rope = ggml_numpy.RopeTables(config.head_dim, config.rope_base)

    def linear(self, weights: Sequence[Any]) -> Any:
        return self._k.GGMLLinear(weights)

    def rms_norm(self, x: Array, weight: Array) -> Array:
        return self._k.rms_norm(x, weight, self.config.rms_eps)

    def swiglu(self, gate: Array, up: Array) -> Array:
        return self._k.swiglu(gate, up)

    def rope_tables(self, positions: np.ndarray) -> tuple[Array, Array]:
        return self._rope(positions)

    def rope(self, x: Array, cos: Array, sin: Array) -> Array:
        return self._k.rope(x, cos, sin)

    def _attend(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int) -> Array:
        k, v = kc[slots].astype(np.float32), vc[slots].astype(np.float32)
        return self._k.attention(q, k, v, start, self.config.num_kv_heads, tiled=q.shape[0] > 1)

    def attend_prefill(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int) -> Array:
        c = self.config
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
