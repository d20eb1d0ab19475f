"""Attention over the paged KV cache in Numba: one (query, head) pair per
``prange`` task, keys read through the page table, softmax computed online.

Decode: one query per sequence; its scores live in a scratch vector of the
context's length. Prefill is tiled as FlashAttention is: keys and values are
visited in tiles of ``TILE`` positions with a running maximum, a running
denominator and a rescaled output accumulator (the online softmax), so memory
stays linear in the prompt length (no T x S score matrix: a 4k-token prompt
would need 9 heads x 4k x 4k x 4 bytes = 600 MB for it) and each tile of keys
stays in L1 while all of its scores are used.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from . import attention_numpy

TILE = 64  # key positions per tile: 64 x 64 floats of keys = 16 KiB
# Prompt chunks whose score matrix stays under this take the plain BLAS kernel: it was 3-5x
# faster than the tiled loops here (64 queries over 100-1000 keys, one thread); the tiled
# kernel's job is the long prompt whose T x S matrix would not fit in memory.
PLAIN_SCORE_BYTES = 64 << 20


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def decode_kernel(q: np.ndarray, kc: np.ndarray, vc: np.ndarray, idx: np.ndarray, lens: np.ndarray, group: int,
                  scale: float, out: np.ndarray) -> None:
    """q (B, heads, hd); kc, vc (pool rows, kv heads, hd); idx (B, W) pool rows; out (B, heads, hd)."""
    nbatch, heads, hd = q.shape
    for task in prange(nbatch * heads):
        b = task // heads
        h = task % heads
        kv = h // group
        n = lens[b]
        scores = np.empty(n, np.float32)
        top = np.float32(-np.inf)
        for i in range(n):
            row = idx[b, i]
            s = np.float32(0.0)
            for e in range(hd):
                s += q[b, h, e] * kc[row, kv, e]
            s *= scale
            scores[i] = s
            top = max(top, s)
        total = np.float32(0.0)
        for i in range(n):
            w = np.exp(scores[i] - top)
            scores[i] = w
            total += w
        for e in range(hd):
            out[b, h, e] = 0.0
        inv = np.float32(1.0) / total
        for i in range(n):
            row = idx[b, i]
            w = scores[i] * inv
            for e in range(hd):
                out[b, h, e] += w * vc[row, kv, e]


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def prefill_kernel(q: np.ndarray, kc: np.ndarray, vc: np.ndarray, slots: np.ndarray, start: int, window: int, group: int,
                   scale: float, out: np.ndarray) -> None:
    """Causal tiled attention: query t (position start + t) sees keys 0..start+t, or only the
    last ``window`` of them when window > 0. q, out (T, heads, hd)."""
    ntok, heads, hd = q.shape
    for task in prange(ntok * heads):
        t = task // heads
        h = task % heads
        kv = h // group
        n = start + t + 1
        acc = np.zeros(hd, np.float32)
        scores = np.empty(TILE, np.float32)
        run_max = np.float32(-np.inf)
        run_sum = np.float32(0.0)
        first = max(0, n - window) if window > 0 else 0
        for lo in range(first, n, TILE):
            hi = min(lo + TILE, n)
            tile_max = np.float32(-np.inf)
            for i in range(lo, hi):
                row = slots[i]
                s = np.float32(0.0)
                for e in range(hd):
                    s += q[t, h, e] * kc[row, kv, e]
                s *= scale
                scores[i - lo] = s
                tile_max = max(tile_max, s)
            new_max = max(run_max, tile_max)
            rescale = np.exp(run_max - new_max)  # 0 on the first tile (exp(-inf))
            run_sum *= rescale
            for e in range(hd):
                acc[e] *= rescale
            for i in range(lo, hi):
                w = np.exp(scores[i - lo] - new_max)
                run_sum += w
                row = slots[i]
                for e in range(hd):
                    acc[e] += w * vc[row, kv, e]
            run_max = new_max
        inv = np.float32(1.0) / run_sum
        for e in range(hd):
            out[t, h, e] = acc[e] * inv


def attend_prefill(xp: Any, num_heads: int, num_kv_heads: int, head_dim: int, q: np.ndarray, kc: np.ndarray, vc: np.ndarray,
                   slots: np.ndarray, start: int, window: int = 0) -> np.ndarray:
    """Causal attention of T new queries (positions start..start+T-1) over S = start+T cached keys
    (the last ``window`` of them with window > 0): plain (one score matrix) while it is small,
    tiled with an online softmax beyond."""
    t = q.shape[0]
    if num_heads * t * (start + t) * 4 <= PLAIN_SCORE_BYTES:
        return attention_numpy.attend_prefill(xp, num_heads, num_kv_heads, head_dim, q, kc, vc, slots, start, window)
    return attend_prefill_tiled(num_heads, num_kv_heads, head_dim, q, kc, vc, slots, start, window)


def attend_prefill_tiled(num_heads: int, num_kv_heads: int, head_dim: int, q: np.ndarray, kc: np.ndarray, vc: np.ndarray,
                         slots: np.ndarray, start: int, window: int = 0) -> np.ndarray:
    """The tiled kernel whatever the size (memory O(T x head_dim) beyond the cache)."""
    t = q.shape[0]
    out = np.empty((t, num_heads, head_dim), np.float32)
    prefill_kernel(np.ascontiguousarray(q, dtype=np.float32).reshape(t, num_heads, head_dim), kc, vc,
                   np.ascontiguousarray(slots, dtype=np.int64), int(start), int(window), num_heads // num_kv_heads,
                   1.0 / math.sqrt(head_dim), out)
    return out.reshape(t, num_heads * head_dim)


def attend_decode(xp: Any, num_heads: int, num_kv_heads: int, head_dim: int, q: np.ndarray, kc: np.ndarray, vc: np.ndarray,
                  slot_lists: list[np.ndarray]) -> np.ndarray:
    """One query per sequence over its own cached keys."""
    b = q.shape[0]
    lens = np.array([len(s) for s in slot_lists], dtype=np.int64)
    idx = np.zeros((b, int(lens.max())), dtype=np.int64)
    for i, s in enumerate(slot_lists):
        idx[i, : len(s)] = s
    out = np.empty((b, num_heads, head_dim), np.float32)
    decode_kernel(np.ascontiguousarray(q, dtype=np.float32).reshape(b, num_heads, head_dim), kc, vc, idx, lens,
                  num_heads // num_kv_heads, 1.0 / math.sqrt(head_dim), out)
    return out.reshape(b, num_heads * head_dim)
