"""A whole decode step of a Llama model in one Numba call: every layer's
RMSNorm, Q/K/V block matvec, rotary embedding, KV-cache write, attention,
output projection, SwiGLU MLP and residual adds, for B one-token rows.

Why: with the matvecs on the GGUF blocks (qlinear_numba), what was left of a
decode step was Python and numpy glue: about 60 small array calls per layer,
30 layers, 2-4 ms per token against ~6 ms of matvec work. Here the layer loop
runs in compiled code, the page table is turned into pool rows once per step
(not once per layer) and every intermediate lives in scratch buffers
allocated once per call.

Each row is computed exactly as it would be alone (the kernels loop over
tokens outermost), so a speculative verification row equals the one-token
decode of the same position bit for bit. Every layer's matrices must be one
block matrix of one type each (SmolLM2's Q4_1 layers); other models keep the
per-operation path.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from numba import njit, types
from numba.extending import overload

from .qlinear_numba import QK, ROWS, BlockLinear, BlockMatrix, q4_1_matvec, q8_0_matvec


def block_matvec(qs: np.ndarray, d: np.ndarray, m: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """The Q4_1 or Q8_0 kernel chosen by the codes' dtype at compile time (jitted callers only)."""
    raise TypeError("block_matvec is only callable from Numba-compiled code")


@overload(block_matvec)
def _block_matvec(qs, d, m, x, out):  # noqa: ANN001, ANN202
    if qs.dtype == types.uint8:
        return lambda qs, d, m, x, out: q4_1_matvec(qs, d, m, x, out)
    return lambda qs, d, m, x, out: q8_0_matvec(qs, d, x, out)


@njit(cache=True, nogil=True, fastmath=True)
def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray) -> None:
    for b in range(x.shape[0]):
        ss = np.float32(0.0)
        for e in range(x.shape[1]):
            ss += x[b, e] * x[b, e]
        inv = np.float32(1.0) / np.sqrt(ss / np.float32(x.shape[1]) + np.float32(eps))
        for e in range(x.shape[1]):
            out[b, e] = x[b, e] * inv * w[e]


@njit(cache=True, nogil=True, fastmath=True)
def decode_layers(x: np.ndarray, attn_norm: np.ndarray, ffn_norm: np.ndarray, qkv: Any, wo: Any, gate_up: Any, down: Any,
                  kc: np.ndarray, vc: np.ndarray, new_rows: np.ndarray, idx: np.ndarray, lens: np.ndarray,
                  cos: np.ndarray, sin: np.ndarray, n_heads: int, n_kv: int, head_dim: int, inter: int,
                  eps: float, scale: float) -> None:
    """x (B, D) float32 in/out: the residual stream of B decode rows through every layer.

    qkv, wo, gate_up, down: (qs, d, m) block arrays stacked over layers; kc, vc
    the pool (layers, rows, kv heads, head_dim); new_rows (B,) the pool row
    each new key goes to; idx (B, W) / lens (B,) the pool rows each row
    attends to (its own key last); cos, sin (B, head_dim / 2).

    Not ``parallel``: compiled that way this function ran 5.5x slower (29.6 against 5.4 ms
    for SmolLM2's 30 layers, one thread); the matvecs it calls keep their own ``prange``
    over row groups, so extra threads still split the work that matters.
    """
    nrows, dim = x.shape
    hd, half, group = head_dim, head_dim // 2, n_heads // n_kv
    nq, nkv = n_heads * head_dim, n_kv * head_dim
    h = np.empty((nrows, dim), np.float32)
    qkv_out = np.empty((nrows, qkv[1].shape[1] * ROWS), np.float32)
    attn = np.empty((nrows, nq), np.float32)
    o_out = np.empty((nrows, wo[1].shape[1] * ROWS), np.float32)
    gu_out = np.empty((nrows, gate_up[1].shape[1] * ROWS), np.float32)
    act = np.empty((nrows, inter), np.float32)
    dn_out = np.empty((nrows, down[1].shape[1] * ROWS), np.float32)
    scores = np.empty((group, idx.shape[1]), np.float32)
    tops = np.empty(group, np.float32)
    for li in range(attn_norm.shape[0]):
        _rms_norm(x, attn_norm[li], eps, h)
        block_matvec(qkv[0][li], qkv[1][li], qkv[2][li], h.reshape(nrows, dim // QK, QK), qkv_out)
        for b in range(nrows):
            for head in range(n_heads + n_kv):  # query heads, then key heads: adjacent pairs rotate
                base = head * hd
                for i in range(half):
                    x0, x1 = qkv_out[b, base + 2 * i], qkv_out[b, base + 2 * i + 1]
                    c, s = cos[b, i], sin[b, i]
                    qkv_out[b, base + 2 * i] = x0 * c - x1 * s
                    qkv_out[b, base + 2 * i + 1] = x0 * s + x1 * c
            row = new_rows[b]
            for head in range(n_kv):
                for e in range(hd):
                    kc[li, row, head, e] = qkv_out[b, nq + head * hd + e]
                    vc[li, row, head, e] = qkv_out[b, nq + nkv + head * hd + e]
        # attention, per (row, kv head): each key/value row is read once for the `group` query
        # heads that share it (per query head instead: 3x the reads, 2 GMAC/s on SmolLM2)
        for b in range(nrows):
            n = lens[b]
            for kv in range(n_kv):
                h0 = kv * group
                for g in range(group):
                    tops[g] = -np.inf
                for i in range(n):
                    r = idx[b, i]
                    for g in range(group):
                        s = np.float32(0.0)
                        for e in range(hd):
                            s += qkv_out[b, (h0 + g) * hd + e] * kc[li, r, kv, e]
                        s *= scale
                        scores[g, i] = s
                        tops[g] = max(tops[g], s)
                for g in range(group):
                    total = np.float32(0.0)
                    for i in range(n):
                        w = np.exp(scores[g, i] - tops[g])
                        scores[g, i] = w
                        total += w
                    inv = np.float32(1.0) / total
                    for i in range(n):
                        scores[g, i] *= inv
                    for e in range(hd):
                        attn[b, (h0 + g) * hd + e] = 0.0
                for i in range(n):
                    r = idx[b, i]
                    for g in range(group):
                        w = scores[g, i]
                        for e in range(hd):
                            attn[b, (h0 + g) * hd + e] += w * vc[li, r, kv, e]
        block_matvec(wo[0][li], wo[1][li], wo[2][li], attn.reshape(nrows, nq // QK, QK), o_out)
        for b in range(nrows):
            for e in range(dim):
                x[b, e] += o_out[b, e]
        _rms_norm(x, ffn_norm[li], eps, h)
        block_matvec(gate_up[0][li], gate_up[1][li], gate_up[2][li], h.reshape(nrows, dim // QK, QK), gu_out)
        for b in range(nrows):
            for i in range(inter):
                g = gu_out[b, i]
                act[b, i] = g / (np.float32(1.0) + np.exp(-g)) * gu_out[b, inter + i]
        block_matvec(down[0][li], down[1][li], down[2][li], act.reshape(nrows, inter // QK, QK), dn_out)
        for b in range(nrows):
            for e in range(dim):
                x[b, e] += dn_out[b, e]


class FusedDecoder:
    """The layers' block matrices stacked per kind (the layers' own matrices become views of the stacks)."""

    KINDS = ("wqkv", "wo", "w_gate_up", "w_down")

    def __init__(self, config: Any, layers: Sequence[dict[str, Any]]) -> None:
        self.config = config
        self.attn_norm = np.stack([np.asarray(layer["attn_norm"], np.float32) for layer in layers])
        self.ffn_norm = np.stack([np.asarray(layer["ffn_norm"], np.float32) for layer in layers])
        self.stacks = {}
        for kind in self.KINDS:
            mats: list[BlockMatrix] = [layer[kind].parts[0] for layer in layers]
            qs, d = np.stack([m.qs for m in mats]), np.stack([m.d for m in mats])
            m = np.stack([mat.m for mat in mats]) if mats[0].m is not None else d  # Q8_0: d stands in, unread
            for li, mat in enumerate(mats):
                mat.qs, mat.d = qs[li], d[li]
                if mat.m is not None:
                    mat.m = m[li]
            self.stacks[kind] = (qs, d, m)

    @classmethod
    def applies(cls, layers: Sequence[dict[str, Any]]) -> bool:
        """Every layer's matrices are single Q4_1 or Q8_0 block matrices, each kind of one type in every layer."""
        for kind in cls.KINDS:
            lins = [layer[kind] for layer in layers]
            if not all(isinstance(lin, BlockLinear) and len(lin.parts) == 1 and lin.parts[0].width == QK for lin in lins):
                return False
            if len({(lin.parts[0].qtype, lin.parts[0].qs.shape) for lin in lins}) != 1:
                return False
        return True

    def __call__(self, x: np.ndarray, kc: np.ndarray, vc: np.ndarray, new_rows: np.ndarray, slot_lists: Sequence[np.ndarray],
                 cos: np.ndarray, sin: np.ndarray) -> None:
        """Run decode rows x (B, D) through every layer in place; row b's new key goes to pool row
        new_rows[b] and its query attends to slot_lists[b] (which ends with that row)."""
        c = self.config
        lens = np.array([len(s) for s in slot_lists], dtype=np.int64)
        idx = np.zeros((len(slot_lists), int(lens.max())), dtype=np.int64)
        for i, s in enumerate(slot_lists):
            idx[i, : len(s)] = s
        st = self.stacks
        decode_layers(x, self.attn_norm, self.ffn_norm, st["wqkv"], st["wo"], st["w_gate_up"], st["w_down"], kc, vc,
                      np.ascontiguousarray(new_rows, dtype=np.int64), idx, lens, np.ascontiguousarray(cos), np.ascontiguousarray(sin),
                      c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size, float(c.rms_eps), 1.0 / math.sqrt(c.head_dim))


def make_fused_decoder(config: Any, layers: Sequence[dict[str, Any]]) -> FusedDecoder | None:
    """The one-call decode step where the model's matrices allow it, else None (per-operation path)."""
    return FusedDecoder(config, layers) if layers and config.plain_llama and FusedDecoder.applies(layers) else None
