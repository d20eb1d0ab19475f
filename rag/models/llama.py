"""Llama architecture forward pass (RMSNorm, rotary embeddings, grouped-query
attention, SwiGLU) over a paged KV cache, on the backend's array module; also
Gemma 3, which is the same skeleton with a few switches (LlamaConfig's Gemma
fields: scaled embeddings, RMSNorm of each query/key head, norms after the
attention and the MLP, GELU-tanh, half-split rotary pairs, and sliding-window
local layers with their own rotary base between full-attention layers).

One call runs a *batch step*: any mix of sequences, each bringing its new
tokens (a whole prompt for prefill, one token for decode). All new tokens go
through the projections and the MLP as one matrix; attention reads each
sequence's keys/values through its page table. Decode sequences share one
padded batched attention, prefill sequences run one by one.

Weights follow the GGUF layout: Q and K rows are permuted by llama.cpp's
converter so that rotary embeddings rotate *adjacent* pairs (x[2i], x[2i+1]).
The arithmetic of each operation comes from a numerics object (numerics.py):
float32 BLAS by default, or llama.cpp's own bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ...engine.backend import Backend, get_backend
from ...engine.errors import FormatVersionError, InvalidArgumentError
from .kv_cache import PagedKVCache, SequenceCache
from .numerics import make_numerics

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
    # Gemma 3's variations (the defaults are Llama's)
    embed_scale: float = 1.0  # token embeddings times this (Gemma: sqrt(hidden))
    activation: str = "silu"  # gated MLP activation: "silu" (SwiGLU) or "gelu_tanh" (GeGLU)
    rope_neox: bool = False  # rotate pairs (i, i + head_dim/2), not adjacent pairs (Llama GGUF)
    qk_norm: bool = False  # RMSNorm of every query and key head before the rotation
    post_norms: bool = False  # RMSNorm of the attention and MLP outputs before each residual add
    sliding_window: int = 0  # local layers attend to the last this many positions (0: none)
    sliding_pattern: int = 0  # every this-many-th layer is global, the others local
    rope_base_local: float = 10000.0  # rotary base of the local layers

    def is_local(self, layer: int) -> bool:
        """Sliding-window layer (llama.cpp's swa pattern: layer il is local unless (il + 1) % pattern == 0)."""
        return bool(self.sliding_pattern) and (layer + 1) % self.sliding_pattern != 0

    @property
    def plain_llama(self) -> bool:
        """None of Gemma's variations: the fused decode step and llama.cpp numerics apply."""
        return (self.embed_scale, self.activation, self.rope_neox, self.qk_norm, self.post_norms, self.sliding_window) == (
            1.0, "silu", False, False, False, 0)

    @classmethod
    def from_gguf(cls, meta: Mapping[str, Any], arch: str, vocab_size: int) -> "LlamaConfig":
        def get(key: str, default: Any = None) -> Any:
            full = f"{arch}.{key}"
            if full not in meta and default is None:
                raise FormatVersionError(f"GGUF metadata lacks {full!r}")
            return meta.get(full, default)

        hidden = int(get("embedding_length"))
        heads = int(get("attention.head_count"))
        # Gemma 3 (llama.cpp's LLM_ARCH_GEMMA3): local layers' rotary base is 10000 whatever the file's global base.
        gemma = dict(embed_scale=math.sqrt(hidden), activation="gelu_tanh", rope_neox=True, qk_norm=True, post_norms=True,
                     sliding_window=int(get("attention.sliding_window", 0)), sliding_pattern=6, rope_base_local=10000.0)
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
            **(gemma if arch == "gemma3" else {}),
        )

    def validate(self) -> None:
        if self.num_heads % self.num_kv_heads or self.head_dim % 2:
            raise FormatVersionError(
                f"unsupported head layout: {self.num_heads} heads, {self.num_kv_heads} kv heads, head_dim {self.head_dim}"
            )
        if self.activation not in ("silu", "gelu_tanh"):
            raise FormatVersionError(f"unsupported MLP activation {self.activation!r}")


def random_llama_tensors(config: LlamaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under GGUF tensor names: for tests and for throughput runs where
    the real file cannot go (speed does not depend on the values)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    c, d, hd = config, config.hidden_size, config.head_dim
    t = {"token_embd.weight": w(c.vocab_size, d, scale=1.0), "output_norm.weight": 1 + w(d, scale=0.1)}
    for i in range(c.num_layers):
        p = f"blk.{i}."
        t |= {
            p + "attn_norm.weight": 1 + w(d, scale=0.1),
            p + "attn_q.weight": w(c.num_heads * hd, d),
            p + "attn_k.weight": w(c.num_kv_heads * hd, d),
            p + "attn_v.weight": w(c.num_kv_heads * hd, d),
            p + "attn_output.weight": w(d, c.num_heads * hd),
            p + "ffn_norm.weight": 1 + w(d, scale=0.1),
            p + "ffn_gate.weight": w(c.intermediate_size, d),
            p + "ffn_up.weight": w(c.intermediate_size, d),
            p + "ffn_down.weight": w(d, c.intermediate_size),
        }
        if c.qk_norm:
            t |= {p + "attn_q_norm.weight": 1 + w(hd, scale=0.1), p + "attn_k_norm.weight": 1 + w(hd, scale=0.1)}
        if c.post_norms:
            t |= {p + "post_attention_norm.weight": 1 + w(d, scale=0.1), p + "post_ffw_norm.weight": 1 + w(d, scale=0.1)}
    return t


class LlamaModel:
    """Weights on the device and the batched forward pass.

    Linear layers are fused (QKV in one matrix, gate and up in another) so a
    step is a handful of large matmuls per layer. ``numerics`` is "float32"
    (default) or "llama.cpp" (see numerics.py).
    """

    def __init__(
        self, config: LlamaConfig, tensors: Mapping[str, Any], backend: str | Backend | None = None, numerics: str = "float32"
    ) -> None:
        config.validate()
        self.config = config
        self.backend = get_backend(backend)
        self.numerics = make_numerics(numerics, config, self.backend)
        xp = self.xp = self.numerics.xp

        def get(name: str) -> Any:
            if name not in tensors:
                raise FormatVersionError(f"model weights lack tensor {name!r}")
            return tensors[name]

        def vec(name: str) -> Array:
            return xp.asarray(np.ascontiguousarray(get(name), dtype=np.float32))

        def linear(*names: str) -> Any:
            return self.numerics.linear([get(n) for n in names])

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
            if c.qk_norm:
                self.layers[-1] |= {"q_norm": vec(p + "attn_q_norm.weight"), "k_norm": vec(p + "attn_k_norm.weight")}
            if c.post_norms:
                self.layers[-1] |= {"post_attn_norm": vec(p + "post_attention_norm.weight"), "post_ffn_norm": vec(p + "post_ffw_norm.weight")}
        self.fused_decode = self.numerics.fused_decoder(self.layers)

    @property
    def nbytes(self) -> int:
        """Bytes of weights held (the tied embedding counted once)."""
        mats = [self.embed] + ([] if self.lm_head is self.embed else [self.lm_head])
        mats += [layer[k] for layer in self.layers for k in ("wqkv", "wo", "w_gate_up", "w_down")]
        return int(sum(m.nbytes for m in mats))

    def new_cache(self, num_blocks: int, block_size: int = 16) -> PagedKVCache:
        c = self.config
        return PagedKVCache(self.xp, c.num_layers, c.num_kv_heads, c.head_dim, num_blocks, block_size, self.numerics.kv_dtype)

    # -- forward ---------------------------------------------------------

    def _layers(self, cache: PagedKVCache, x: Array, ropes: tuple[Array, ...], new_slots: Array, decode_rows: Array | None,
                dec_slots: list[np.ndarray], spans: list[tuple[int, int, np.ndarray, int]]) -> Array:
        """Every layer, one operation at a time, over rows x: ``decode_rows`` attend to
        ``dec_slots``, each prefill span (lo, hi, context slots, start) causally to its own.
        ``ropes``: (cos, sin) of the global layers, then of the local ones."""
        xp, c, num = self.xp, self.config, self.numerics
        nq, nkv, hd = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.head_dim
        for li, layer in enumerate(self.layers):
            local = c.is_local(li)
            cos, sin = ropes[2:] if local else ropes[:2]
            window = c.sliding_window if local else 0
            h = num.rms_norm(x, layer["attn_norm"])
            qkv = layer["wqkv"](h)
            q = qkv[:, :nq].reshape(-1, c.num_heads, hd)
            k = qkv[:, nq : nq + nkv].reshape(-1, c.num_kv_heads, hd)
            if c.qk_norm:
                q, k = num.rms_norm(q, layer["q_norm"]), num.rms_norm(k, layer["k_norm"])
            q, k = num.rope(q, cos, sin), num.rope(k, cos, sin)
            kc, vc = cache.k[li], cache.v[li]
            kc[new_slots] = k
            vc[new_slots] = qkv[:, nq + nkv :].reshape(-1, c.num_kv_heads, hd)
            attn = xp.empty((x.shape[0], nq), dtype=xp.float32)
            if decode_rows is not None:
                seen = [s[-window:] for s in dec_slots] if window else dec_slots
                attn[decode_rows] = num.attend_decode(q[decode_rows], kc, vc, seen)
            for lo, hi, slots, start in spans:
                attn[lo:hi] = num.attend_prefill(q[lo:hi], kc, vc, slots, start, window)
            o = layer["wo"](attn)
            x = x + (num.rms_norm(o, layer["post_attn_norm"]) if c.post_norms else o)
            h = num.rms_norm(x, layer["ffn_norm"])
            gu = layer["w_gate_up"](h)
            mlp = layer["w_down"](num.glu(gu[:, : c.intermediate_size], gu[:, c.intermediate_size :]))
            x = x + (num.rms_norm(mlp, layer["post_ffn_norm"]) if c.post_norms else mlp)
        return x

    def forward(
        self, batch: Sequence[tuple[SequenceCache, Sequence[int]]], all_logits: bool = False, verify: Sequence[int] = ()
    ) -> list[Array]:
        """Run new tokens of each sequence through the model, appending their K/V to its cache.

        Returns per sequence the logits (1, V) of its last new token, or (T_i, V)
        for all its new tokens when ``all_logits``. ``verify``: indices into
        ``batch`` of sequences whose new tokens check a speculative draft; they
        get logits for every new token, and each token's attention runs as a
        decode step of its own (the decode kernel over its own prefix), so the
        logits are the ones one-token-at-a-time decoding would give. Space must
        have been reserved (``SequenceCache.reserve``) by the caller; on error no
        sequence length changes.
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
        num = self.numerics
        cos, sin = num.rope_tables(positions, c.rope_base)
        ropes = (cos, sin) + (num.rope_tables(positions, c.rope_base_local) if c.sliding_pattern else (cos, sin))
        new_slots = xp.asarray(np.concatenate([seq.slots(s, s + n) for (seq, _), s, n in zip(batch, starts, counts)]))
        ctx_slots = [seq.slots(0, s + n) for (seq, _), s, n in zip(batch, starts, counts)]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        verify = set(verify)
        decode = [i for i, n in enumerate(counts) if n == 1 or i in verify]
        prefill = [i for i, n in enumerate(counts) if n > 1 and i not in verify]
        # every decode-like query row, with the cache rows its position sees
        dec_rows = np.asarray([offsets[i] + j for i in decode for j in range(counts[i])], dtype=np.int64)
        dec_slots = [ctx_slots[i][: starts[i] + j + 1] for i in decode for j in range(counts[i])]
        cache = batch[0][0].cache
        x = self.embed.rows(xp.asarray(tokens))
        if c.embed_scale != 1.0:
            x = x * np.float32(c.embed_scale)
        if self.fused_decode is not None and decode:
            # Decode rows take the one-call step whatever else shares the batch, so a row's
            # result never depends on the batch (speculative verification relies on it).
            xd = np.ascontiguousarray(x[dec_rows])
            self.fused_decode(xd, cache.k, cache.v, new_slots[dec_rows], dec_slots, cos[dec_rows], sin[dec_rows])
            x[dec_rows] = xd
            if prefill:
                rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in prefill])
                local = np.concatenate([[0], np.cumsum([counts[i] for i in prefill])])
                spans = [(local[j], local[j + 1], ctx_slots[i], starts[i]) for j, i in enumerate(prefill)]
                x[rows] = self._layers(cache, x[rows], tuple(t[rows] for t in ropes), new_slots[rows], None, [], spans)
        else:
            spans = [(offsets[i], offsets[i + 1], ctx_slots[i], starts[i]) for i in prefill]
            x = self._layers(cache, x, ropes, new_slots, xp.asarray(dec_rows) if decode else None, dec_slots, spans)
        for (seq, _), n in zip(batch, counts):
            seq.length += n
        if all_logits:
            logits = self.lm_head(num.rms_norm(x, self.out_norm))
            return [logits[offsets[i] : offsets[i + 1]] for i in range(len(batch))]
        # logits of each sequence's last token, or of all its tokens when it verifies a draft
        first = [offsets[i] if i in verify else offsets[i + 1] - 1 for i in range(len(batch))]
        rows = np.concatenate([np.arange(f, offsets[i + 1]) for i, f in enumerate(first)])
        logits = self.lm_head(num.rms_norm(x[xp.asarray(rows)], self.out_norm))
        ends = np.cumsum([offsets[i + 1] - f for i, f in enumerate(first)])
        return [logits[e - (offsets[i + 1] - first[i]) : e] for i, e in enumerate(ends)]
