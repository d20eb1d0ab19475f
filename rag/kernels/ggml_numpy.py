"""llama.cpp's CPU arithmetic, operation for operation, in numpy.

Why: greedy decoding of a quantised model is chaotic. llama.cpp rounds every
matmul input to 8 bits (Q8_1/Q8_0 blocks), so a one-ulp difference anywhere
can move a value across a rounding boundary, and by the last layer the logits
differ by up to 1 (llama.cpp's own prefill and decode paths disagree that
much). Reproducing its tokens therefore means reproducing its bits: the same
block quantisation, the same SIMD lane order of every reduction, the same
fused multiply-adds, the same exp polynomial and libm's cosf/sinf/powf.

The reference is ggml's x86 CPU backend built with AVX512 (what
``pip install llama-cpp-python`` compiles on an AVX512 machine); each routine
names the ggml kernel it mirrors. Verified bit for bit against llama-cpp-python
0.3.36 (tests/rag/test_ggml_numerics.py). Single-precision FMA is emulated in
float64: the product of two float32 is exact there, so the only difference
from a hardware FMA is a double rounding, which needs the exact sum to sit
within 2**-53 of a float32 midpoint.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any, Sequence

import numpy as np

from ...engine.errors import FormatVersionError

F32, F64 = np.float32, np.float64
QK = 32  # elements per quantisation block (Q4_1, Q8_0, Q8_1)
GGML_Q4_1, GGML_Q8_0 = 3, 8  # gguf.GGMLQuantizationType values
SUPPORTED_QTYPES = {GGML_Q4_1: "Q4_1", GGML_Q8_0: "Q8_0"}


def fma(a: Any, b: Any, c: Any) -> np.ndarray:
    """float32 a*b + c with one rounding (vfmadd)."""
    return (np.asarray(a, F64) * np.asarray(b, F64) + np.asarray(c, F64)).astype(F32)


def fnma(a: Any, b: Any, c: Any) -> np.ndarray:
    """float32 c - a*b with one rounding (vfnmadd)."""
    return (np.asarray(c, F64) - np.asarray(a, F64) * np.asarray(b, F64)).astype(F32)


def to_f16(x: Any) -> np.ndarray:
    """Round to IEEE half and back (F16C's vcvtps2ph, round to nearest even)."""
    return np.asarray(x, F32).astype(np.float16).astype(F32)


def hsum8(lanes: np.ndarray) -> np.ndarray:
    """ggml's hsum_float_8 over the last axis (8 lanes): (hi+lo) quads, then pairs, then the two."""
    quad = lanes[..., 4:8] + lanes[..., 0:4]
    return (quad[..., 0] + quad[..., 2]) + (quad[..., 1] + quad[..., 3])


def reduce16(lanes: np.ndarray) -> np.ndarray:
    """GCC's _mm512_reduce_add_ps over the last axis (16 lanes): halves 8, 4, then (0+2) + (1+3)."""
    oct_ = lanes[..., 8:16] + lanes[..., 0:8]
    return hsum8(oct_)


# -- Q8 activations and quantised matmul -------------------------------------


def quantize_q8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """quantize_row_q8_1 (AVX2): per block of 32, d = amax/127, q = round_half_even(x * 127/amax).

    Returns (d as f16, s = d*sum(q) as f16, q as float32 integers) with shapes
    (T, nb), (T, nb), (T, nb, 32). Q8_0 is the same without ``s``.
    """
    t, k = x.shape
    blocks = np.asarray(x, F32).reshape(t, k // QK, QK)
    amax = np.abs(blocks).max(axis=-1)
    d = amax / F32(127)
    nonzero = amax != 0
    inv = np.where(nonzero, F32(127) / np.where(nonzero, amax, F32(1)), F32(0)).astype(F32)
    q = np.rint(blocks * inv[..., None])
    s = to_f16(d * q.sum(axis=-1))
    return to_f16(d), s, q


class QuantBlocks:
    """A Q4_1 or Q8_0 (out, in) matrix as blocks, laid out for :func:`quant_matmul`.

    ``codes`` (in/4, 4, out): the integer codes (0..15 or -128..127) as float32,
    grouped in the 4-element lanes of ggml's SIMD dot product, so one batched
    matmul yields every lane sum exactly (|sum| < 2**24). ``d`` and ``m``
    (blocks, out): per-block scale and, for Q4_1, offset.
    """

    def __init__(self, qtype: int, d: np.ndarray, m: np.ndarray | None, codes: np.ndarray) -> None:
        self.qtype, self.d, self.m, self.codes = qtype, d, m, codes
        self.out_features = codes.shape[2]
        self.in_features = codes.shape[0] * 4

    @classmethod
    def from_raw(cls, qtype: int, raw: np.ndarray, shape: tuple[int, int], name: str = "tensor") -> "QuantBlocks":
        """Parse GGUF block bytes (rows, bytes per row) of a (out, in) matrix."""
        out, inp = shape
        if qtype not in SUPPORTED_QTYPES:
            raise FormatVersionError(
                f"{name}: llama.cpp numerics support {', '.join(SUPPORTED_QTYPES.values())} matrices, not GGML type {qtype};"
                " use numerics='float32' for this model"
            )
        nb = inp // QK
        b = np.ascontiguousarray(raw, dtype=np.uint8).reshape(out, nb, -1)
        d = b[:, :, 0:2].copy().view(np.float16)[..., 0].astype(F32)
        m = None
        if qtype == GGML_Q4_1:
            m = b[:, :, 2:4].copy().view(np.float16)[..., 0].astype(F32)
            packed = b[:, :, 4:]
            codes = np.concatenate([packed & 15, packed >> 4], axis=2).astype(F32)
        else:
            codes = b[:, :, 2:].copy().view(np.int8).astype(F32)
        lanes = np.ascontiguousarray(codes.reshape(out, inp // 4, 4).transpose(1, 2, 0))
        return cls(qtype, np.ascontiguousarray(d.T), None if m is None else np.ascontiguousarray(m.T), lanes)

    @classmethod
    def concat(cls, parts: Sequence["QuantBlocks"]) -> "QuantBlocks":
        """Rows of several matrices of one type (fused Q/K/V, gate/up): outputs are independent rows."""
        if len({p.qtype for p in parts}) != 1 or len({p.in_features for p in parts}) != 1:
            raise FormatVersionError("fused matrices need one quantisation type and one input width")
        m = None if parts[0].m is None else np.concatenate([p.m for p in parts], axis=1)
        return cls(parts[0].qtype, np.concatenate([p.d for p in parts], axis=1), m, np.concatenate([p.codes for p in parts], axis=2))

    def dequantize_rows(self, ids: np.ndarray) -> np.ndarray:
        """ggml's get_rows: d*q (Q8_0) or d*q + m (Q4_1) per element."""
        n = len(ids)
        codes = self.codes[:, :, ids].transpose(2, 0, 1).reshape(n, -1, QK)  # (n, blocks, 32)
        d = self.d[:, ids].T[..., None]
        rows = d * codes if self.m is None else fma(d, codes, self.m[:, ids].T[..., None])
        return rows.reshape(n, self.in_features)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.d.nbytes + (0 if self.m is None else self.m.nbytes))


def quant_matmul(x: np.ndarray, w: QuantBlocks) -> np.ndarray:
    """(T, in) @ W.T as ggml_vec_dot_q4_1_q8_1 / q8_0_q8_0 (AVX2): per output, 8 float lanes.

    Each lane sums 4 adjacent code products of a block (exact integers),
    accumulates ``fma(d_w * d_x, lane, acc)`` block by block, then hsum8; Q4_1
    adds the running ``fma(m_w, s_x, summs)``.
    """
    d8, s8, q8 = quantize_q8(x)
    t, nb = d8.shape
    x_lanes = q8.reshape(t, nb * 8, 4).transpose(1, 0, 2)  # (lanes, T, 4)
    lanes = np.matmul(x_lanes, w.codes).reshape(nb, 8, t, w.out_features)
    acc = np.zeros((8, t, w.out_features), F32)
    summs = np.zeros((t, w.out_features), F32)
    for b in range(nb):
        scale = w.d[b][None, :] * d8[:, b, None]  # (T, O)
        acc = fma(scale, lanes[b], acc)
        if w.m is not None:
            summs = fma(w.m[b][None, :], s8[:, b, None], summs)
    return hsum8(np.moveaxis(acc, 0, -1)) + summs


class GGMLLinear:
    """A linear layer over quantised blocks with llama.cpp's arithmetic."""

    def __init__(self, weights: Sequence[Any]) -> None:
        parts = [_blocks(w) for w in weights]
        self.blocks = parts[0] if len(parts) == 1 else QuantBlocks.concat(parts)
        self.out_features, self.in_features = self.blocks.out_features, self.blocks.in_features

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return quant_matmul(x, self.blocks)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        return self.blocks.dequantize_rows(np.asarray(ids))

    @property
    def nbytes(self) -> int:
        return self.blocks.nbytes


def _blocks(weight: Any) -> QuantBlocks:
    if not hasattr(weight, "raw"):
        raise FormatVersionError(
            f"llama.cpp numerics need quantised matrices ({', '.join(SUPPORTED_QTYPES.values())}), got a float array;"
            " use numerics='float32'"
        )
    return QuantBlocks.from_raw(weight.qtype, weight.raw, weight.shape, weight.name)


# -- element-wise ops ------------------------------------------------------------

_EXP = [float.fromhex(h) for h in ("0x1.8p23", "0x1.715476p+0", "0x1.62e4p-1", "0x1.7f7d1cp-20")]
_EXP_POLY = [F32(float.fromhex(h)) for h in ("0x1.0e4020p-7", "0x1.573e2ep-5", "0x1.555e66p-3", "0x1.fffdb6p-2", "0x1.ffffecp-1")]


def expf(x: np.ndarray) -> np.ndarray:
    """ggml_v_expf (AVX512): Arm's optimized-routines exp (within 2.2 ulp), 2**n scaling, flush beyond |n| > 192."""
    x = np.asarray(x, F32)
    shift, log2e, ln2_hi, ln2_lo = (F32(c) for c in _EXP)
    with np.errstate(invalid="ignore", over="ignore"):
        z = fma(x, log2e, shift)
        n = z - shift
        b = fnma(n, ln2_lo, fnma(n, ln2_hi, x))
        u = b * b
        c4, c3, c2, c1, c0 = _EXP_POLY
        j = fma(fma(fma(c4, b, c3), u, fma(c2, b, c1)), u, fma(c0, b, F32(1)))
        in_range = np.isfinite(n) & (np.abs(n) <= 192)
        scaled = np.ldexp(j, np.where(in_range, n, 0).astype(np.int32))
        flushed = np.where(n <= 0, F32(0), F32(np.inf))
        return np.where(in_range, scaled, flushed).astype(F32)


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """ggml_vec_swiglu_f32: gate / (1 + expf(-gate)) * up."""
    return gate / (F32(1) + expf(F32(0) - gate)) * up


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """ggml rms_norm (sum of float32 squares in double) then the weight multiply."""
    sq = (x * x).astype(F64).sum(axis=-1, keepdims=True)
    mean = (sq / x.shape[-1]).astype(F32)
    scale = F32(1) / np.sqrt(mean + F32(eps))
    return x * scale * weight


# -- rotary embeddings -------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _libm() -> Any:
    """The C library's float maths: llama.cpp's rope tables come from powf/cosf/sinf, whose last bits numpy does not share."""
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    for name in ("cosf", "sinf"):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    lib.powf.restype, lib.powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    return lib


class RopeTables:
    """ggml_rope_cache_init: theta starts at the position and is multiplied by powf(base, -2/dims) per pair."""

    def __init__(self, head_dim: int, base: float) -> None:
        self.pairs = head_dim // 2
        lib = _libm()
        self._scale = F32(lib.powf(F32(base), F32(-2.0) / F32(head_dim)))
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _row(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        row = self._rows.get(pos)
        if row is None:
            lib = _libm()
            cos, sin = np.empty(self.pairs, F32), np.empty(self.pairs, F32)
            theta = F32(pos)
            for i in range(self.pairs):
                cos[i], sin[i] = lib.cosf(theta), lib.sinf(theta)
                theta = F32(theta * self._scale)
            row = self._rows[pos] = (cos, sin)
        return row

    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = [self._row(int(p)) for p in positions]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """rotate_pairs as compiled (contracted): (fma(x0, c, -x1*s), fma(x0, s, x1*c)); x (T, heads, hd)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = fma(x0, c, -(x1 * s))
    out[..., 1::2] = fma(x0, s, x1 * c)
    return out


# -- attention -------------------------------------------------------------------


def dot_f16_vec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ggml_vec_dot_f16 (AVX512, used when one token is decoded): four 16-lane accumulators over steps of 64,
    the remainder (last axis mod 64) added in double.

    ``a`` and ``b`` hold f16 values as float32 and broadcast together.
    """
    n = a.shape[-1]
    body = n - n % 64
    acc: list[Any] = [F32(0)] * 4
    for s in range(0, body, 64):
        for j in range(4):
            lo = s + 16 * j
            acc[j] = fma(a[..., lo : lo + 16], b[..., lo : lo + 16], acc[j])
    total = reduce16((acc[0] + acc[2]) + (acc[1] + acc[3])) if body else F32(0)
    if body == n:
        return total
    tail = np.asarray(total, F64)
    for i in range(body, n):
        tail = tail + (a[..., i] * b[..., i]).astype(F64)
    return tail.astype(F32)


def dot_f16_tiled(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """llamafile's tinyBLAS F16 GEMM (used for a batch of tokens): one 16-lane accumulator over steps of 16.

    tinyBLAS declines inner sizes that are not a multiple of 16, and ggml then uses vec_dot.
    """
    if a.shape[-1] % 16:
        return dot_f16_vec(a, b)
    acc: Any = F32(0)
    for s in range(0, a.shape[-1], 16):
        acc = fma(a[..., s : s + 16], b[..., s : s + 16], acc)
    return reduce16(acc)


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    """ggml soft_max: expf(x - max) in 16-lane chunks, chunk sums reduced then added in double, times 1/sum."""
    with np.errstate(invalid="ignore"):
        e = expf(scores - scores.max(axis=-1, keepdims=True))
    chunks = reduce16(e.reshape(*e.shape[:-1], -1, 16)).astype(F64)
    total = np.zeros(chunks.shape[:-1], F64)
    for i in range(chunks.shape[-1]):
        total += chunks[..., i]
    return e * (1.0 / total)[..., None].astype(F32)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, num_kv_heads: int, tiled: bool) -> np.ndarray:
    """One sequence's causal attention with llama.cpp's non-flash CPU graph.

    q (T, heads, hd) float32 for positions start..start+T-1; k, v (S, kv_heads, hd)
    f16 values of all S = start + T cached positions. Q and the probabilities
    are rounded to f16 (the cache's type) before their matmuls; ``tiled`` picks
    the batch (tinyBLAS) or single-token (vec_dot) reduction order.
    """
    t, heads, hd = q.shape
    group = heads // num_kv_heads
    s = k.shape[0]
    width = -(-s // 64) * 64  # llama.cpp pads the KV view; zero rows leave every sum unchanged
    kp = np.zeros((width, num_kv_heads, hd), F32)
    vp = np.zeros((width, num_kv_heads, hd), F32)
    kp[:s], vp[:s] = k, v
    dot = dot_f16_tiled if tiled else dot_f16_vec
    qh = to_f16(q).transpose(1, 0, 2)  # (heads, T, hd)
    kh = np.repeat(kp.transpose(1, 0, 2), group, axis=0)  # (heads, W, hd)
    scores = dot(qh[:, :, None, :], kh[:, None, :, :]) * (F32(1) / np.sqrt(F32(hd)))  # (heads, T, W)
    allowed = np.arange(width)[None, :] <= np.arange(start, start + t)[:, None]
    probs = softmax_rows(np.where(allowed[None], scores, F32(-np.inf)))
    vh = np.repeat(vp.transpose(1, 2, 0), group, axis=0)  # (heads, hd, W)
    out = dot(to_f16(probs)[:, :, None, :], vh[:, None, :, :])  # (heads, T, hd)
    return out.transpose(1, 0, 2).reshape(t, heads * hd)
