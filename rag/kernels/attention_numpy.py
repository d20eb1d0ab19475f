"""Attention over the paged KV cache on an array module (numpy or CuPy).

Plain kernels: prefill builds the (kv heads, group x T, S) score matrix of a
prompt chunk, decode pads every sequence's keys to the longest context and
masks. Both are a few large array operations, which is what numpy and CuPy
run well; the Numba module (attention_numba) has per-head loops with an
online softmax instead.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..models.ops import softmax

Array = Any


def attend_prefill(xp: Any, num_heads: int, num_kv_heads: int, head_dim: int, q: Array, kc: Array, vc: Array,
                   slots: np.ndarray, start: int, window: int = 0) -> Array:
    """Causal attention of T new queries (positions start..start+T-1) over S = start+T cached keys;
    with ``window`` > 0 a query at position p sees keys p - window + 1 .. p (a sliding-window layer)."""
    t = q.shape[0]
    g = num_heads // num_kv_heads
    idx = xp.asarray(slots)
    k = kc[idx].transpose(1, 2, 0)  # (kv, hd, S)
    v = vc[idx].transpose(1, 0, 2)  # (kv, S, hd)
    qh = q.reshape(t, num_kv_heads, g, head_dim).transpose(1, 2, 0, 3).reshape(num_kv_heads, g * t, head_dim)
    scores = (qh @ k) * (1.0 / math.sqrt(head_dim))  # (kv, g*T, S)
    qpos = np.tile(np.arange(start, start + t), g)
    kpos = np.arange(start + t)[None, :]
    allowed = kpos <= qpos[:, None]
    if window:
        allowed &= kpos > qpos[:, None] - window
    scores = xp.where(xp.asarray(allowed)[None], scores, -xp.inf)
    out = softmax(xp, scores) @ v  # (kv, g*T, hd)
    return out.reshape(num_kv_heads, g, t, head_dim).transpose(2, 0, 1, 3).reshape(t, num_heads * head_dim)


def attend_decode(xp: Any, num_heads: int, num_kv_heads: int, head_dim: int, q: Array, kc: Array, vc: Array,
                  slot_lists: list[np.ndarray]) -> Array:
    """One query per sequence, B sequences, keys padded to the longest context and masked."""
    b = q.shape[0]
    g = num_heads // num_kv_heads
    lens = np.array([len(s) for s in slot_lists])
    width = int(lens.max())
    idx = np.zeros((b, width), dtype=np.int64)
    for i, s in enumerate(slot_lists):
        idx[i, : len(s)] = s
    valid = xp.asarray(np.arange(width)[None, :] < lens[:, None])  # (B, S)
    didx = xp.asarray(idx)
    k = kc[didx].transpose(0, 2, 3, 1)  # (B, kv, hd, S)
    v = vc[didx].transpose(0, 2, 1, 3)  # (B, kv, S, hd)
    qh = q.reshape(b, num_kv_heads, g, head_dim)
    scores = (qh @ k) * (1.0 / math.sqrt(head_dim))  # (B, kv, g, S)
    scores = xp.where(valid[:, None, None, :], scores, -xp.inf)
    out = softmax(xp, scores) @ v  # (B, kv, g, hd)
    return out.reshape(b, num_heads * head_dim)
