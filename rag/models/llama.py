"""Llama architecture forward pass (RMSNorm, rotary embeddings, grouped-query
attention, SwiGLU) over a paged KV cache, on the backend's array module.

One call runs a *batch step*: any mix of sequences, each bringing its new
tokens (a whole prompt for prefill, one token for decode). All new tokens go
through the projections and the MLP as one matrix; attention reads each
sequence's keys/values through its page table. Decode sequences share one
padded batched attention, prefill sequences run one by one.

Weights follow the GGUF layout: Q and K rows are permuted by llama.cpp's
converter so that rotary embeddings rotate *adjacent* pairs (x[2i], x[2i+1]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ...engine.backend import Backend, get_backend, load_kernels
from ...engine.errors import FormatVersionError, InvalidArgumentError
from .kv_cache import PagedKVCache, SequenceCache
from .ops import rms_norm, silu, softmax

Array = Any


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    head_dim: int
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    context_length: int = 2048

    @classmethod
    def from_gguf(cls, meta: Mapping[str, Any], arch: str, vocab_size: int) -> "LlamaConfig":
        def get(key: str, default: Any = None) -> Any:
            full = f"{arch}.{key}"
            if full not in meta and default is None:
                raise FormatVersionError(f"GGUF metadata lacks {full!r}")
            return meta.get(full, default)

        hidden = int(get("embedding_length"))
        heads = int(get("attention.head_count"))
        return cls(
            vocab_size=int(meta.get(f"{arch}.vocab_size", vocab_size)),
            hidden_size=hidden,
            num_layers=int(get("block_count")),
            num_heads=heads,
            num_kv_heads=int(get("attention.head_count_kv", heads)),
            intermediate_size=int(get("feed_forward_length")),
            head_dim=int(get("attention.key_length", hidden // heads)),
            rope_base=float(get("rope.freq_base", 10000.0)),
            rms_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
            context_length=int(get("context_length", 2048)),
        )

    def validate(self) -> None:
        if self.num_heads % self.num_kv_heads or self.head_dim % 2:
            raise FormatVersionError(
                f"unsupported head layout: {self.num_heads} heads, {self.num_kv_heads} kv heads, head_dim {self.head_dim}"
            )


def rope_tables(positions: np.ndarray, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin (T, head_dim/2) float32 for integer positions (angles computed in float64)."""
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = positions.astype(np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def apply_rope(xp: ModuleType, x: Array, cos: Array, sin: Array) -> Array:
    """Rotate adjacent pairs of x (T, heads, head_dim) by the per-position angles."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = xp.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


class LlamaModel:
    """Float32 weights on the device and the batched forward pass.

    Linear weights are stored (in, out) and fused (QKV in one matrix, gate and
    up in another) so a step is a handful of large matmuls per layer.
    """

    def __init__(self, config: LlamaConfig, tensors: Mapping[str, Any], backend: str | Backend | None = None) -> None:
        config.validate()
        self.config = config
        self.backend = get_backend(backend)
        xp = self.xp = self.backend.xp
        kernels = load_kernels("shoal.rag.kernels", "qlinear", self.backend)

        def get(name: str) -> Any:
            if name not in tensors:
                raise FormatVersionError(f"model weights lack tensor {name!r}")
            return tensors[name]

        def vec(name: str) -> Array:
            return xp.asarray(np.ascontiguousarray(get(name), dtype=np.float32))

        def linear(*names: str) -> Any:
            return kernels.make_linear([get(n) for n in names], xp)

        c = config
        self.embed = linear("token_embd.weight")
        if (self.embed.out_features, self.embed.in_features) != (c.vocab_size, c.hidden_size):
            raise FormatVersionError(
                f"token_embd has shape {(self.embed.out_features, self.embed.in_features)}, config says {(c.vocab_size, c.hidden_size)}"
            )
        # Tied embeddings when the file has no output matrix.
        self.lm_head = linear("output.weight") if "output.weight" in tensors else self.embed
        self.out_norm = vec("output_norm.weight")
        self.layers: list[dict[str, Any]] = []
        for i in range(c.num_layers):
            p = f"blk.{i}."
            self.layers.append(
                {
                    "attn_norm": vec(p + "attn_norm.weight"),
                    "wqkv": linear(p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"),
                    "wo": linear(p + "attn_output.weight"),
                    "ffn_norm": vec(p + "ffn_norm.weight"),
                    "w_gate_up": linear(p + "ffn_gate.weight", p + "ffn_up.weight"),
                    "w_down": linear(p + "ffn_down.weight"),
                }
            )

    @property
    def nbytes(self) -> int:
        """Bytes of weights held (the tied embedding counted once)."""
        mats = [self.embed] + ([] if self.lm_head is self.embed else [self.lm_head])
        mats += [layer[k] for layer in self.layers for k in ("wqkv", "wo", "w_gate_up", "w_down")]
        return int(sum(m.nbytes for m in mats))

    def new_cache(self, num_blocks: int, block_size: int = 16) -> PagedKVCache:
        c = self.config
        return PagedKVCache(self.xp, c.num_layers, c.num_kv_heads, c.head_dim, num_blocks, block_size)

    # -- attention -------------------------------------------------------

    def _attend_prefill(self, q: Array, kc: Array, vc: Array, slots: np.ndarray, start: int) -> Array:
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

    def _attend_decode(self, q: Array, kc: Array, vc: Array, slot_lists: list[np.ndarray]) -> Array:
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

    # -- forward ---------------------------------------------------------

    def forward(self, batch: Sequence[tuple[SequenceCache, Sequence[int]]], all_logits: bool = False) -> list[Array]:
        """Run new tokens of each sequence through the model, appending their K/V to its cache.

        Returns per sequence the logits (1, V) of its last new token, or (T_i, V)
        for all its new tokens when ``all_logits``. Space must have been reserved
        (``SequenceCache.reserve``) by the caller; on error no sequence length changes.
        """
        xp, c = self.xp, self.config
        if not batch:
            return []
        counts = [len(toks) for _, toks in batch]
        if min(counts) < 1:
            raise InvalidArgumentError("every sequence in a step needs at least one new token")
        starts = [seq.length for seq, _ in batch]
        for (seq, _), s, n in zip(batch, starts, counts):
            if len(seq.blocks) * seq.cache.block_size < s + n:
                raise InvalidArgumentError("KV space not reserved for the new tokens")
            if s + n > c.context_length:
                raise InvalidArgumentError(f"sequence of {s + n} tokens exceeds the model's context length {c.context_length}")
        tokens = np.concatenate([np.asarray(t, dtype=np.int64) for _, t in batch])
        if tokens.min() < 0 or tokens.max() >= c.vocab_size:
            raise InvalidArgumentError(f"token ids must be in [0, {c.vocab_size})")
        positions = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, counts)])
        cos, sin = (xp.asarray(a) for a in rope_tables(positions, c.head_dim, c.rope_base))
        new_slots = xp.asarray(np.concatenate([seq.slots(s, s + n) for (seq, _), s, n in zip(batch, starts, counts)]))
        ctx_slots = [seq.slots(0, s + n) for (seq, _), s, n in zip(batch, starts, counts)]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        decode = [i for i, n in enumerate(counts) if n == 1]
        prefill = [i for i, n in enumerate(counts) if n > 1]
        decode_rows = xp.asarray(offsets[decode]) if decode else None
        cache = batch[0][0].cache
        nq, nkv, hd = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.head_dim
        x = self.embed.rows(xp.asarray(tokens))
        for li, layer in enumerate(self.layers):
            h = rms_norm(xp, x, layer["attn_norm"], c.rms_eps)
            qkv = layer["wqkv"](h)
            q = apply_rope(xp, qkv[:, :nq].reshape(-1, c.num_heads, hd), cos, sin)
            k = apply_rope(xp, qkv[:, nq : nq + nkv].reshape(-1, c.num_kv_heads, hd), cos, sin)
            kc, vc = cache.k[li], cache.v[li]
            kc[new_slots] = k
            vc[new_slots] = qkv[:, nq + nkv :].reshape(-1, c.num_kv_heads, hd)
            attn = xp.empty((len(tokens), nq), dtype=xp.float32)
            if decode:
                attn[decode_rows] = self._attend_decode(q[decode_rows], kc, vc, [ctx_slots[i] for i in decode])
            for i in prefill:
                lo, hi = offsets[i], offsets[i + 1]
                attn[lo:hi] = self._attend_prefill(q[lo:hi], kc, vc, ctx_slots[i], starts[i])
            x = x + layer["wo"](attn)
            h = rms_norm(xp, x, layer["ffn_norm"], c.rms_eps)
            gu = layer["w_gate_up"](h)
            act = silu(xp, gu[:, : c.intermediate_size]) * gu[:, c.intermediate_size :]
            x = x + layer["w_down"](act)
        for (seq, _), n in zip(batch, counts):
            seq.length += n
        if not all_logits:
            x = x[xp.asarray(offsets[1:] - 1)]
            logits = self.lm_head(rms_norm(xp, x, self.out_norm, c.rms_eps))
            return [logits[i : i + 1] for i in range(len(batch))]
        logits = self.lm_head(rms_norm(xp, x, self.out_norm, c.rms_eps))
        return [logits[offsets[i] : offsets[i + 1]] for i in range(len(batch))]
