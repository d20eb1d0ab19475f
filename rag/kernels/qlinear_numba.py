"""Linear layers that multiply the GGUF blocks themselves (Q4_1, Q8_0, and Q5_0 / Q4_K
converted losslessly to those two layouts at load, Q6_K to int8 blocks of 16), in Numba.

Why: a decode step is a chain of matrix-vector products, so its speed is the
speed of reading the weights. Dequantised to float32, SmolLM2-135M's matrices
are 540 MB per token; as Q4_1 blocks (20 bytes per 32 weights) they are 86 MB.
The kernels here read the blocks, unpack the 4-bit (or 8-bit) codes in
registers and accumulate in float32 against float32 activations. The
activations are *not* rounded to 8 bits (llama.cpp's scheme): float lanes
multiply just as fast here, and the result is the float32 product with the
file's exact weights, up to summation order (see numerics.py for llama.cpp's
bits).

Layout: a matrix of ``out`` rows is processed in groups of ``ROWS`` rows
whose accumulators (ROWS x lanes) stay in registers while the group's blocks
stream by; ``prange`` runs the groups on the Numba thread pool. Decode and
speculative verification (a few tokens) take this kernel token by token;
prefill chunks (``GEMM_TOKENS`` or more) unpack the matrix once to float32 and
use one BLAS GEMM. Weights of any other type (float arrays, Q5_K) stay
dense float32 (qlinear_numpy). Rows are stored in groups of ROWS, each
group's blocks contiguous, so one kernel task reads one memory stream.

Measured on this machine, one thread (Xeon with AVX512, shared): 18-23 GMAC/s
for Q4_1 (SmolLM2's 3072x576 gate/up, 86 us) against 16 GMAC/s for OpenBLAS
sgemv on the dequantised float32 matrix (109 us); groups of 8 rows were ~5x
faster than one row at a time (the compiler unrolls the constant group).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import numpy as np
from numba import njit, prange

from . import dequant_numpy as dq
from .qlinear_numpy import DenseLinear

Array = Any

QK = 32  # weights per quantisation block
GGML_Q4_1, GGML_Q8_0 = 3, 8  # gguf.GGMLQuantizationType values
Q8_16 = -16  # not a GGUF type: int8 codes in blocks of 16 with one float32 scale each (Q6_K, converted)
# what the kernels multiply, exactly (Q5_0, Q4_K and Q6_K converted at load: kernel_blocks)
BLOCK_KERNEL_QTYPES = {GGML_Q4_1: QK, GGML_Q8_0: QK, dq.Q5_0: QK, dq.Q4_K: dq.QK_K, dq.Q6_K: dq.QK_K}
ROWS = 8  # output rows per group
# From this many tokens on (prefill chunks), unpacking the matrix to float32 once and one BLAS
# GEMM beat the per-token kernel: 3072x576, one thread, 16 tokens 1.4 ms kernel vs 2.3 ms
# unpack + GEMM, 128 tokens 11 ms vs 8.6 ms.
GEMM_TOKENS = 48
# ...unpacking this many rows at a time, so a large vocabulary (Gemma's 262k x 640 embedding,
# 671 MB as float32) never exists dense at once.
GEMM_ROW_CHUNK = 4096


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def q4_1_matvec(qs: np.ndarray, d: np.ndarray, m: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[t, g*ROWS + k] = sum_b d * (q . x[t, b]) + m * sum(x[t, b]) for the rows of group g, token by token.

    qs (groups, nb, ROWS, 16) uint8: byte j of a block holds element j (low
    nibble) and j + 16 (high nibble); d, m (groups, nb, ROWS) float32; x (T, nb,
    32) float32; out (T, groups * ROWS). Nibbles are unpacked in float
    (h = floor(v / 16)): Numba widens integer operations to 64 bits, which kept
    an integer version from vectorising (4x slower). With lo = v - 16 h,
    lo * x_lo + h * x_hi = v * x_lo + h * (x_hi - 16 x_lo), so the second factor
    is computed once per token and the inner loop is two multiply-adds.
    """
    groups, nb = d.shape[0], d.shape[1]
    xh2 = np.empty((nb, 16), np.float32)
    xsum = np.empty(nb, np.float32)
    for t in range(x.shape[0]):
        for b in range(nb):
            s = np.float32(0.0)
            for j in range(16):
                xh2[b, j] = x[t, b, 16 + j] - np.float32(16.0) * x[t, b, j]
                s += x[t, b, j] + x[t, b, 16 + j]
            xsum[b] = s
        for g in prange(groups):
            acc = np.zeros((ROWS, 16), np.float32)
            macc = np.zeros(ROWS, np.float32)
            for b in range(nb):
                # rows innermost: the compiler unrolls the ROWS constant and vectorises over j
                # (rows-outer, j-inner measured 6x slower: 3.6 against 21.5 GMAC per CPU-second)
                for j in range(16):
                    xl, xh = x[t, b, j], xh2[b, j]
                    for k in range(ROWS):
                        v = np.float32(qs[g, b, k, j])
                        h = np.floor(v * np.float32(0.0625))
                        acc[k, j] += d[g, b, k] * (v * xl + h * xh)
                for k in range(ROWS):
                    macc[k] += m[g, b, k] * xsum[b]
            for k in range(ROWS):
                total = macc[k]
                for j in range(16):
                    total += acc[k, j]
                out[t, g * ROWS + k] = total


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def q8_0_matvec(qs: np.ndarray, d: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[t, g*ROWS + k] = sum_b d * (q . x[t, b]); qs (groups, nb, ROWS, 32) int8, d (groups, nb, ROWS), x (T, nb, 32)."""
    groups, nb = d.shape[0], d.shape[1]
    for t in range(x.shape[0]):
        for g in prange(groups):
            acc = np.zeros((ROWS, QK), np.float32)
            for b in range(nb):
                for j in range(QK):
                    xv = x[t, b, j]
                    for k in range(ROWS):
                        acc[k, j] += d[g, b, k] * (np.float32(qs[g, b, k, j]) * xv)
            for k in range(ROWS):
                total = np.float32(0.0)
                for j in range(QK):
                    total += acc[k, j]
                out[t, g * ROWS + k] = total


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def q8_matvec_any_width(qs: np.ndarray, d: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """q8_0_matvec for int8 blocks of any width W (Q8_16: Q6_K's 16-weight sub-blocks); qs (groups, nb, ROWS, W),
    x (T, nb, W). Not used for W = 32: with the width a run-time value it ran at 19 against 26 GMAC per
    CPU-second for q8_0_matvec (2048x640, one thread); at W = 16 it ran at 21."""
    groups, nb, width = d.shape[0], d.shape[1], qs.shape[3]
    for t in range(x.shape[0]):
        for g in prange(groups):
            acc = np.zeros((ROWS, width), np.float32)
            for b in range(nb):
                for j in range(width):
                    xv = x[t, b, j]
                    for k in range(ROWS):
                        acc[k, j] += d[g, b, k] * (np.float32(qs[g, b, k, j]) * xv)
            for k in range(ROWS):
                total = np.float32(0.0)
                for j in range(width):
                    total += acc[k, j]
                out[t, g * ROWS + k] = total


@njit(cache=True, nogil=True, parallel=True)
def q4_1_rows(qs: np.ndarray, d: np.ndarray, m: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    """Dequantise rows ``ids`` (an embedding lookup, or every row before a prefill GEMM): d*q + m."""
    for i in prange(ids.shape[0]):
        g, k = ids[i] // ROWS, ids[i] % ROWS
        for b in range(d.shape[1]):
            for j in range(16):
                v = qs[g, b, k, j]
                out[i, b * QK + j] = d[g, b, k] * np.float32(v & 15) + m[g, b, k]
                out[i, b * QK + 16 + j] = d[g, b, k] * np.float32(v >> 4) + m[g, b, k]


@njit(cache=True, nogil=True, parallel=True)
def q8_rows(qs: np.ndarray, d: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    """Rows of int8 blocks of any width (Q8_0, Q8_16): d*q."""
    width = qs.shape[3]
    for i in prange(ids.shape[0]):
        g, k = ids[i] // ROWS, ids[i] % ROWS
        for b in range(d.shape[1]):
            for j in range(width):
                out[i, b * width + j] = d[g, b, k] * np.float32(qs[g, b, k, j])


def _grouped(a: np.ndarray, rows: int) -> np.ndarray:
    """(rows, nb, ...) -> (groups, nb, ROWS, ...): the ROWS rows a kernel task reads side by side,
    contiguous (one memory stream per task instead of ROWS); zero rows pad the last group."""
    pad = -rows % ROWS
    if pad:
        a = np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)])
    g = a.reshape((-1, ROWS) + a.shape[1:])
    return np.ascontiguousarray(np.moveaxis(g, 1, 2))


def kernel_blocks(qtype: int, raw: np.ndarray, rows: int, cols: int) -> tuple[int, np.ndarray, np.ndarray | None, np.ndarray]:
    """A GGUF matrix as the blocks one of the two kernels reads, exactly: (kernel type, d, m, codes).

    Q4_1 / Q8_0 as stored. Q5_0 (w = d (q - 16)) becomes Q8_0 blocks with codes q - 16. Q4_K
    (w = d sc_i q - dmin m_i per 32-weight sub-block) becomes Q4_1 blocks with d' = d sc_i and
    m' = -dmin m_i, the float32 products ggml's own dequantiser forms, codes repacked to Q4_1's
    nibble order. Q6_K (w = d sc_i (q - 32) per 16 weights) becomes Q8_16 blocks, d' = d sc_i and
    codes q - 32 (dequant_numpy.q6_k_parts). d, m (rows, nb) float32; codes (rows, nb, 16) uint8
    (Q4_1), (rows, nb, 32) int8 (Q8_0) or (rows, nb, 16) int8 (Q8_16).
    """
    nb = cols // QK
    if qtype == dq.Q6_K:
        codes, scales = dq.q6_k_parts(np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, 210))
        return Q8_16, scales.reshape(rows, 2 * nb), None, np.ascontiguousarray(codes.reshape(rows, 2 * nb, 16))
    if qtype == dq.Q4_K:
        b = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, 144)
        sc, mn = dq.k_scales(b[:, 4:16])
        codes = dq.k_codes_4bit(b[:, 16:144]).reshape(rows, nb, QK)
        packed = codes[:, :, :16] | (codes[:, :, 16:] << 4)
        d = (dq.f16(b[:, 0:2]) * sc).reshape(rows, nb)
        m = (-(dq.f16(b[:, 2:4]) * mn)).reshape(rows, nb)
        return GGML_Q4_1, d, m, np.ascontiguousarray(packed)
    b = np.ascontiguousarray(raw, dtype=np.uint8).reshape(rows, nb, -1)
    d = dq.f16(b[:, :, 0:2].reshape(-1, 2)).reshape(rows, nb)
    if qtype == GGML_Q4_1:
        return GGML_Q4_1, d, dq.f16(b[:, :, 2:4].reshape(-1, 2)).reshape(rows, nb), np.ascontiguousarray(b[:, :, 4:20])
    if qtype == dq.Q5_0:
        return GGML_Q8_0, d, None, dq.q5_0_codes(b.reshape(-1, 22)).reshape(rows, nb, QK)
    return GGML_Q8_0, d, None, np.ascontiguousarray(b[:, :, 2:34]).view(np.int8)


class BlockMatrix:
    """One (out, in) matrix as arrays a block kernel reads, rows grouped by ROWS (see _grouped)."""

    def __init__(self, qtype: int, d: np.ndarray, m: np.ndarray | None, codes: np.ndarray) -> None:
        """Kernel type and ungrouped (rows, nb, ...) arrays, as kernel_blocks returns them."""
        out, nb = d.shape
        self.qtype = qtype
        self.width = QK if qtype == GGML_Q4_1 else codes.shape[2]  # weights per block
        self.out_features, self.in_features = out, nb * self.width
        self.d = _grouped(d, out)
        self.m = None if m is None else _grouped(m, out)
        self.qs = _grouped(codes, out)

    @property
    def padded_rows(self) -> int:
        return self.d.shape[0] * ROWS

    def matvec_into(self, xb: np.ndarray, out: np.ndarray) -> None:
        """out (T, padded_rows) = xb (T, nb, width) times this matrix, by the block kernel."""
        if self.qtype == GGML_Q4_1:
            q4_1_matvec(self.qs, self.d, self.m, xb, out)
        elif self.qtype == GGML_Q8_0:
            q8_0_matvec(self.qs, self.d, xb, out)
        else:
            q8_matvec_any_width(self.qs, self.d, xb, out)

    def matmul(self, x: np.ndarray) -> np.ndarray:
        t = x.shape[0]
        if t >= GEMM_TOKENS:  # prefill: unpack (a chunk of rows at a time), then BLAS
            out = np.empty((t, self.out_features), np.float32)
            for lo in range(0, self.out_features, GEMM_ROW_CHUNK):
                hi = min(lo + GEMM_ROW_CHUNK, self.out_features)
                out[:, lo:hi] = x @ self.rows(np.arange(lo, hi)).T
            return out
        xb = np.ascontiguousarray(x, dtype=np.float32).reshape(t, self.in_features // self.width, self.width)
        out = np.empty((t, self.padded_rows), np.float32)
        self.matvec_into(xb, out)
        return out[:, : self.out_features]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((ids.shape[0], self.in_features), np.float32)
        if self.qtype == GGML_Q4_1:
            q4_1_rows(self.qs, self.d, self.m, ids, out)
        else:
            q8_rows(self.qs, self.d, ids, out)
        return out

    @property
    def nbytes(self) -> int:
        return int(self.qs.nbytes + self.d.nbytes + (0 if self.m is None else self.m.nbytes))


class BlockLinear:
    """y = x @ W.T over quantised blocks. Fused weights of one type share one matrix;
    mixed types keep one matrix per type and concatenate their outputs."""

    def __init__(self, weights: Sequence[Any]) -> None:
        runs: list[list[tuple]] = []
        for w in weights:  # neighbours of one kernel type share a matrix, output order kept
            blocks = kernel_blocks(w.qtype, w.raw, w.shape[0], w.shape[1])
            if runs and runs[-1][0][0] == blocks[0]:
                runs[-1].append(blocks)
            else:
                runs.append([blocks])
        self.parts = [BlockMatrix(run[0][0], np.concatenate([r[1] for r in run]),
                                  None if run[0][2] is None else np.concatenate([r[2] for r in run]),
                                  np.concatenate([r[3] for r in run])) for run in runs]
        self.out_features = sum(p.out_features for p in self.parts)
        self.in_features = self.parts[0].in_features

    def __call__(self, x: Array) -> np.ndarray:
        outs = [p.matmul(x) for p in self.parts]
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)

    def rows(self, ids: Array) -> np.ndarray:
        ids = np.asarray(ids)
        if len(self.parts) == 1:
            return self.parts[0].rows(ids)
        starts = np.cumsum([0] + [p.out_features for p in self.parts])
        out = np.empty((len(ids), self.in_features), np.float32)
        for p, lo in zip(self.parts, starts):
            sel = (ids >= lo) & (ids < lo + p.out_features)
            if sel.any():
                out[sel] = p.rows(ids[sel] - lo)
        return out

    @property
    def nbytes(self) -> int:
        return int(sum(p.nbytes for p in self.parts))


def block_kernel_applies(weights: Sequence[Any]) -> bool:
    """True when every weight is a GGUF matrix of a kernel type whose width is whole blocks."""
    return all(
        hasattr(w, "raw") and w.qtype in BLOCK_KERNEL_QTYPES and w.shape[1] % BLOCK_KERNEL_QTYPES[w.qtype] == 0
        and w.shape[1] == weights[0].shape[1]
        for w in weights
    )


def make_linear(weights: Sequence[Any], xp: ModuleType) -> BlockLinear | DenseLinear:
    """Quantised-block layer for weights of BLOCK_KERNEL_QTYPES, dense float32 for anything else."""
    if block_kernel_applies(weights):
        return BlockLinear(weights)
    return DenseLinear(weights, xp)
