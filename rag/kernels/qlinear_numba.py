"""Linear layers that multiply the GGUF blocks themselves (Q4_1, Q8_0), in Numba.

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
use one BLAS GEMM. Weights of any other type (float arrays, K-quants) stay
dense float32 (qlinear_numpy).

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

from .qlinear_numpy import DenseLinear

Array = Any

QK = 32  # weights per quantisation block
GGML_Q4_1, GGML_Q8_0 = 3, 8  # gguf.GGMLQuantizationType values
BLOCK_KERNEL_QTYPES = (GGML_Q4_1, GGML_Q8_0)
ROWS = 8  # output rows per group
# From this many tokens on (prefill chunks), unpacking the matrix to float32 once and one BLAS
# GEMM beat the per-token kernel: 3072x576, one thread, 16 tokens 1.4 ms kernel vs 2.3 ms
# unpack + GEMM, 128 tokens 11 ms vs 8.6 ms.
GEMM_TOKENS = 48


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def q4_1_matvec(qs: np.ndarray, d: np.ndarray, m: np.ndarray, xlo: np.ndarray, xhi: np.ndarray, xsum: np.ndarray, out: np.ndarray) -> None:
    """out[t, r] = sum_b d[r,b] * (lo . x_lo + hi . x_hi) + m[r,b] * sum(x block b), token by token.

    qs (rows, nb, 16) uint8: byte j of a block holds element j (low nibble) and
    j + 16 (high nibble); d, m (rows, nb) float32; xlo, xhi (T, nb, 16) the
    activations split the same way; xsum (T, nb). Nibbles are unpacked in
    float (h = floor(v / 16), lo = v - 16 h): Numba widens integer operations
    to 64 bits, which kept the integer version from vectorising (4x slower).
    """
    rows, nb = d.shape
    groups = rows // ROWS
    for t in range(xlo.shape[0]):
        for g in prange(groups):
            acc = np.zeros((ROWS, 16), np.float32)
            r = g * ROWS
            for b in range(nb):
                for j in range(16):
                    xl = xlo[t, b, j]
                    xh = xhi[t, b, j]
                    for k in range(ROWS):
                        v = np.float32(qs[r + k, b, j])
                        h = np.floor(v * np.float32(0.0625))
                        acc[k, j] += d[r + k, b] * ((v - np.float32(16.0) * h) * xl + h * xh)
            for k in range(ROWS):
                total = np.float32(0.0)
                for b in range(nb):
                    total += m[r + k, b] * xsum[t, b]
                for j in range(16):
                    total += acc[k, j]
                out[t, r + k] = total
        for r in range(groups * ROWS, rows):  # rows past the last whole group
            total = np.float32(0.0)
            for b in range(nb):
                for j in range(16):
                    v = qs[r, b, j]
                    total += d[r, b] * (np.float32(v & 15) * xlo[t, b, j] + np.float32(v >> 4) * xhi[t, b, j])
                total += m[r, b] * xsum[t, b]
            out[t, r] = total


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def q8_0_matvec(qs: np.ndarray, d: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[t, r] = sum_b d[r,b] * (q[r,b] . x[t,b]), token by token; qs (rows, nb, 32) int8, x (T, nb, 32)."""
    rows, nb = d.shape
    groups = rows // ROWS
    for t in range(x.shape[0]):
        for g in prange(groups):
            acc = np.zeros((ROWS, QK), np.float32)
            r = g * ROWS
            for b in range(nb):
                for j in range(QK):
                    xv = x[t, b, j]
                    for k in range(ROWS):
                        acc[k, j] += d[r + k, b] * (np.float32(qs[r + k, b, j]) * xv)
            for k in range(ROWS):
                total = np.float32(0.0)
                for j in range(QK):
                    total += acc[k, j]
                out[t, r + k] = total
        for r in range(groups * ROWS, rows):
            total = np.float32(0.0)
            for b in range(nb):
                for j in range(QK):
                    total += d[r, b] * np.float32(qs[r, b, j]) * x[t, b, j]
            out[t, r] = total


@njit(cache=True, nogil=True, parallel=True)
def q4_1_rows(qs: np.ndarray, d: np.ndarray, m: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    """Dequantise rows ``ids`` (an embedding lookup, or every row before a prefill GEMM): d*q + m."""
    for i in prange(ids.shape[0]):
        r = ids[i]
        for b in range(d.shape[1]):
            for j in range(16):
                v = qs[r, b, j]
                out[i, b * QK + j] = d[r, b] * np.float32(v & 15) + m[r, b]
                out[i, b * QK + 16 + j] = d[r, b] * np.float32(v >> 4) + m[r, b]


@njit(cache=True, nogil=True, parallel=True)
def q8_0_rows(qs: np.ndarray, d: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    for i in prange(ids.shape[0]):
        r = ids[i]
        for b in range(d.shape[1]):
            for j in range(QK):
                out[i, b * QK + j] = d[r, b] * np.float32(qs[r, b, j])


class BlockMatrix:
    """One (out, in) Q4_1 or Q8_0 matrix as arrays the kernels read (parsed once from the GGUF bytes)."""

    def __init__(self, qtype: int, raw: np.ndarray, shape: tuple[int, int]) -> None:
        out, inp = shape
        nb = inp // QK
        b = np.ascontiguousarray(raw, dtype=np.uint8).reshape(out, nb, -1)
        self.qtype = qtype
        self.out_features, self.in_features = out, inp
        self.d = np.ascontiguousarray(b[:, :, 0:2]).view(np.float16)[..., 0].astype(np.float32)
        if qtype == GGML_Q4_1:
            self.m = np.ascontiguousarray(b[:, :, 2:4]).view(np.float16)[..., 0].astype(np.float32)
            self.qs = np.ascontiguousarray(b[:, :, 4:20])
        else:
            self.m = None
            self.qs = np.ascontiguousarray(b[:, :, 2:34]).view(np.int8)

    @classmethod
    def concat(cls, parts: Sequence["BlockMatrix"]) -> "BlockMatrix":
        """Rows of several matrices of one type stacked (fused Q/K/V, gate/up)."""
        fused = object.__new__(cls)
        fused.qtype = parts[0].qtype
        fused.out_features, fused.in_features = sum(p.out_features for p in parts), parts[0].in_features
        fused.d = np.concatenate([p.d for p in parts])
        fused.m = None if parts[0].m is None else np.concatenate([p.m for p in parts])
        fused.qs = np.concatenate([p.qs for p in parts])
        return fused

    def matmul(self, x: np.ndarray) -> np.ndarray:
        t = x.shape[0]
        if t >= GEMM_TOKENS:  # prefill: unpack once, then BLAS
            return x @ self.rows(np.arange(self.out_features)).T
        nb = self.in_features // QK
        xb = np.ascontiguousarray(x, dtype=np.float32).reshape(t, nb, QK)
        out = np.empty((t, self.out_features), np.float32)
        if self.qtype == GGML_Q4_1:
            q4_1_matvec(self.qs, self.d, self.m, np.ascontiguousarray(xb[:, :, :16]), np.ascontiguousarray(xb[:, :, 16:]), xb.sum(axis=2), out)
        else:
            q8_0_matvec(self.qs, self.d, xb, out)
        return out

    def rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((ids.shape[0], self.in_features), np.float32)
        if self.qtype == GGML_Q4_1:
            q4_1_rows(self.qs, self.d, self.m, ids, out)
        else:
            q8_0_rows(self.qs, self.d, ids, out)
        return out

    @property
    def nbytes(self) -> int:
        return int(self.qs.nbytes + self.d.nbytes + (0 if self.m is None else self.m.nbytes))


class BlockLinear:
    """y = x @ W.T over quantised blocks. Fused weights of one type share one matrix;
    mixed types keep one matrix per type and concatenate their outputs."""

    def __init__(self, weights: Sequence[Any]) -> None:
        mats = [BlockMatrix(w.qtype, w.raw, w.shape) for w in weights]
        self.parts: list[BlockMatrix] = []
        for mat in mats:  # merge neighbours of one type, keep output order
            if self.parts and self.parts[-1].qtype == mat.qtype:
                self.parts[-1] = BlockMatrix.concat([self.parts[-1], mat])
            else:
                self.parts.append(mat)
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
    """True when every weight is a Q4_1/Q8_0 GGUF matrix whose width is whole blocks."""
    return all(
        hasattr(w, "raw") and w.qtype in BLOCK_KERNEL_QTYPES and w.shape[1] % QK == 0 and w.shape[1] == weights[0].shape[1]
        for w in weights
    )


def make_linear(weights: Sequence[Any], xp: ModuleType) -> BlockLinear | DenseLinear:
    """Quantised-block layer for Q4_1/Q8_0 weights, dense float32 for anything else."""
    if block_kernel_applies(weights):
        return BlockLinear(weights)
    return DenseLinear(weights, xp)
