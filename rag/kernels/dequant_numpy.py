"""Dequantisation of GGUF block types to float32, vectorised over blocks in numpy.

Why our own: these layouts are also what block kernels read, and the K-quants
(Q4_K, Q5_K, Q6_K: 256-weight super-blocks with 6- or 8-bit sub-block scales)
are what most downloadable GGUF files use ("Q4_K_M" mixes Q4_K, Q6_K and Q5_0).
Each routine follows ggml's ``dequantize_row_*`` (ggml-quants.c) and is tested
against gguf-py's dequantiser on random blocks and on a real Q4_K_M file.

Block layouts (bytes, little-endian; d and dmin are IEEE half floats):

- Q4_1 (32 weights, 20 B): d, m, qs[16]; w = d*q + m, q the 4-bit code.
- Q5_0 (32 weights, 22 B): d, qh[4] (bit j: fifth bit of weight j), qs[16]; w = d*(q - 16).
- Q8_0 (32 weights, 34 B): d, qs[32] int8; w = d*q.
- Q4_K (256 weights, 144 B): d, dmin, scales[12] (8 pairs of 6-bit scale/min), qs[128];
  sub-block i of 32: w = d*sc_i*q - dmin*m_i.
- Q5_K (256 weights, 176 B): d, dmin, scales[12], qh[32], qs[128]; as Q4_K with a fifth bit.
- Q6_K (256 weights, 210 B): ql[128], qh[64], scales[16] int8, d; sub-block of 16:
  w = d*sc_i*(q - 32), q 6 bits (4 from ql, 2 from qh).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...engine.errors import FormatVersionError

# gguf.GGMLQuantizationType values
Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K = 3, 6, 8, 12, 13, 14
QK_K = 256


def f16(b: np.ndarray) -> np.ndarray:
    """(n, 2) uint8 -> (n, 1) float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _low_high(qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (qs & 15).astype(np.float32), (qs >> 4).astype(np.float32)


def dequant_q4_1(b: np.ndarray) -> np.ndarray:
    d, m = f16(b[:, 0:2]), f16(b[:, 2:4])
    lo, hi = _low_high(b[:, 4:20])
    return np.concatenate([lo, hi], axis=1) * d + m


def q5_0_codes(b: np.ndarray) -> np.ndarray:
    """(n, 22) Q5_0 blocks -> (n, 32) int8 codes q - 16 (-16..15)."""
    qh = np.ascontiguousarray(b[:, 2:6]).view("<u4")  # (n, 1)
    bits = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)  # fifth bit of weights 0..31
    qs = b[:, 6:22]
    q = np.concatenate([(qs & 15) | (bits[:, :16] << 4), (qs >> 4) | (bits[:, 16:] << 4)], axis=1)
    return (q.astype(np.int16) - 16).astype(np.int8)


def dequant_q5_0(b: np.ndarray) -> np.ndarray:
    return q5_0_codes(b).astype(np.float32) * f16(b[:, 0:2])


def dequant_q8_0(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32) * f16(b[:, 0:2])


def k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's get_scale_min_k4 for all 8 sub-blocks: (n, 12) uint8 -> scales (n, 8), mins (n, 8) as float32."""
    s = scales.astype(np.uint8)
    sc = np.empty((s.shape[0], 8), np.uint8)
    mn = np.empty((s.shape[0], 8), np.uint8)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc.astype(np.float32), mn.astype(np.float32)


def k_codes_4bit(qs: np.ndarray) -> np.ndarray:
    """(n, 128) -> (n, 8, 32): 64-weight chunk c takes bytes 32c..32c+31, low nibbles first."""
    q = qs.reshape(-1, 4, 32)
    return np.stack([q & 15, q >> 4], axis=2).reshape(-1, 8, 32)


def dequant_q4_k(b: np.ndarray) -> np.ndarray:
    d, dmin = f16(b[:, 0:2]), f16(b[:, 2:4])
    sc, mn = k_scales(b[:, 4:16])
    q = k_codes_4bit(b[:, 16:144]).astype(np.float32)
    return (q * (d * sc)[:, :, None] - (dmin * mn)[:, :, None]).reshape(-1, QK_K)


def dequant_q5_k(b: np.ndarray) -> np.ndarray:
    d, dmin = f16(b[:, 0:2]), f16(b[:, 2:4])
    sc, mn = k_scales(b[:, 4:16])
    qh = b[:, 16:48]  # bit i of byte l: fifth bit of weight l of sub-block i
    high = ((qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1) << 4  # (n, 8, 32)
    q = (k_codes_4bit(b[:, 48:176]) | high).astype(np.float32)
    return (q * (d * sc)[:, :, None] - (dmin * mn)[:, :, None]).reshape(-1, QK_K)


def q6_k_parts(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q6_K blocks (n, 210) as (codes q - 32, (n, 16, 16) int8; scales d*sc_i, (n, 16) float32):
    w = scale * code per 16-weight sub-block, the float32 product ggml's dequantiser forms."""
    ql = b[:, 0:128].reshape(-1, 2, 64)  # per 128-weight half: 64 bytes of low nibbles
    qh = b[:, 128:192].reshape(-1, 2, 32)  # per half: 32 bytes of 2-bit pairs
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32)  # (n, 16), one per 16 weights
    d = f16(b[:, 208:210])
    # within a half, weights l, l+32, l+64, l+96 (l < 32) use ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high
    low = np.concatenate([ql[:, :, :32] & 15, ql[:, :, 32:] & 15, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    high = np.concatenate([(qh >> s) & 3 for s in (0, 2, 4, 6)], axis=2)
    codes = (low | (high << 4)).astype(np.int16) - 32  # (n, 2, 128), -32..31
    return codes.astype(np.int8).reshape(-1, 16, 16), d * sc


def dequant_q6_k(b: np.ndarray) -> np.ndarray:
    codes, scales = q6_k_parts(b)
    return (codes.astype(np.float32) * scales[:, :, None]).reshape(-1, QK_K)


# qtype -> (weights per block, bytes per block, routine)
DEQUANTIZERS: dict[int, tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    Q4_1: (32, 20, dequant_q4_1),
    Q5_0: (32, 22, dequant_q5_0),
    Q8_0: (32, 34, dequant_q8_0),
    Q4_K: (QK_K, 144, dequant_q4_k),
    Q5_K: (QK_K, 176, dequant_q5_k),
    Q6_K: (QK_K, 210, dequant_q6_k),
}


def dequantize(raw: np.ndarray, qtype: int, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) float32 from the rows' GGUF blocks (raw: uint8, rows x bytes per row)."""
    if qtype not in DEQUANTIZERS:
        raise FormatVersionError(f"no dequantiser for GGUF type {qtype}")
    per_block, nbytes, routine = DEQUANTIZERS[qtype]
    rows, cols = shape
    if cols % per_block:
        raise FormatVersionError(f"a row of {cols} weights is not whole blocks of {per_block}")
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, nbytes)
    if blocks.shape[0] != rows * cols // per_block:
        raise FormatVersionError(f"{blocks.shape[0]} blocks do not hold a {rows}x{cols} matrix")
    return np.ascontiguousarray(routine(blocks).reshape(rows, cols), dtype=np.float32)
