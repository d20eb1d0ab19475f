"""Shared by the model and generation tests: a tiny random Llama (GGUF tensor
names), a naive float64 reference forward pass, the one-BLAS-thread fixture,
and the check of a real model's greedy tokens against a llama.cpp reference."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from shoal.rag.models.kv_cache import SequenceCache
from shoal.rag.models.llama import LlamaConfig, LlamaModel, random_llama_tensors


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread() -> Iterator[None]:
    """Run the module with one BLAS thread: on the 2 cores shared by parallel jobs here,
    two spinning OpenBLAS threads made the real-model tests ~6x slower than one."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # dev extra absent: keep the default threading
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


TINY = LlamaConfig(vocab_size=40, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                   intermediate_size=48, head_dim=8, rope_base=10000.0, rms_eps=1e-5, context_length=64)


def tiny_tensors(cfg: LlamaConfig = TINY, seed: int = 0) -> dict[str, np.ndarray]:
    return random_llama_tensors(cfg, seed)


def tiny_model(backend: str = "numpy", seed: int = 0) -> LlamaModel:
    return LlamaModel(TINY, tiny_tensors(TINY, seed), backend)


def naive_logits(tensors: dict[str, np.ndarray], cfg: LlamaConfig, tokens: list[int]) -> np.ndarray:
    """Textbook Llama in float64, one query position at a time, no cache.

    Rotary embeddings via complex multiplication of adjacent pairs; each query
    head h attends with key/value head h // (heads / kv_heads).
    """
    t64 = {k: v.astype(np.float64) for k, v in tensors.items()}
    hd, nh, nkv = cfg.head_dim, cfg.num_heads, cfg.num_kv_heads

    def norm(x: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean() + cfg.rms_eps) * wt

    def rope(vec: np.ndarray, pos: int) -> np.ndarray:
        z = vec[0::2] + 1j * vec[1::2]
        z = z * np.exp(1j * pos * cfg.rope_base ** (-np.arange(0, hd, 2) / hd))
        out = np.empty(hd)
        out[0::2], out[1::2] = z.real, z.imag
        return out

    n = len(tokens)
    h = [t64["token_embd.weight"][tok].copy() for tok in tokens]
    for li in range(cfg.num_layers):
        p = f"blk.{li}."
        keys, vals, queries = [], [], []
        for pos in range(n):
            a = norm(h[pos], t64[p + "attn_norm.weight"])
            q = (t64[p + "attn_q.weight"] @ a).reshape(nh, hd)
            k = (t64[p + "attn_k.weight"] @ a).reshape(nkv, hd)
            queries.append(np.stack([rope(q[j], pos) for j in range(nh)]))
            keys.append(np.stack([rope(k[j], pos) for j in range(nkv)]))
            vals.append((t64[p + "attn_v.weight"] @ a).reshape(nkv, hd))
        new_h = []
        for pos in range(n):
            heads = []
            for j in range(nh):
                g = j // (nh // nkv)
                s = np.array([queries[pos][j] @ keys[u][g] for u in range(pos + 1)]) / np.sqrt(hd)
                wts = np.exp(s - s.max())
                wts /= wts.sum()
                heads.append(sum(wts[u] * vals[u][g] for u in range(pos + 1)))
            x = h[pos] + t64[p + "attn_output.weight"] @ np.concatenate(heads)
            b = norm(x, t64[p + "ffn_norm.weight"])
            gate, up = t64[p + "ffn_gate.weight"] @ b, t64[p + "ffn_up.weight"] @ b
            new_h.append(x + t64[p + "ffn_down.weight"] @ (gate / (1 + np.exp(-gate)) * up))
        h = new_h
    return np.stack([t64["token_embd.weight"] @ norm(x, t64["output_norm.weight"]) for x in h])


# Widths in whole 32-element blocks, so every matrix can be stored as GGUF Q4_1/Q8_0 blocks.
QTINY = LlamaConfig(vocab_size=48, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                    intermediate_size=96, head_dim=16, rope_base=10000.0, rms_eps=1e-5, context_length=128)


def quantized_tensors(cfg: LlamaConfig = QTINY, seed: int = 0) -> dict:
    """Random weights as GGUF stores them: matrices Q4_1 (the embedding Q8_0), vectors float32."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    from shoal.rag.models.gguf_model import QuantizedTensor

    out = {}
    for name, t in random_llama_tensors(cfg, seed).items():
        if t.ndim == 2:
            qtype = GGMLQuantizationType.Q8_0 if name == "token_embd.weight" else GGMLQuantizationType.Q4_1
            out[name] = QuantizedTensor(name, int(qtype), quantize(t, qtype), t.shape)
        else:
            out[name] = t
    return out


def quantized_model(backend: str = "numba", seed: int = 0, numerics: str = "float32") -> LlamaModel:
    return LlamaModel(QTINY, quantized_tensors(QTINY, seed), backend, numerics)


# byte offsets of each block type's half-float scales (random bytes there could be NaN/inf)
_HALF_FIELDS = {3: (0, 2), 6: (0,), 8: (0,), 12: (0, 2), 13: (0, 2), 14: (208,)}  # Q4_1 Q5_0 Q8_0 Q4_K Q5_K Q6_K


def random_gguf_blocks(qtype: int, rows: int, cols: int, seed: int) -> np.ndarray:
    """(rows, bytes per row) of random GGUF blocks of ``qtype`` with finite scales (gguf-py cannot
    quantise to K-quants, so tests build their blocks from random bytes)."""
    from shoal.rag.kernels.dequant_numpy import DEQUANTIZERS

    per_block, nbytes, _ = DEQUANTIZERS[int(qtype)]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (rows * cols // per_block, nbytes), dtype=np.uint8)
    for off in _HALF_FIELDS[int(qtype)]:
        raw[:, off : off + 2] = rng.uniform(-2.0, 2.0, (len(raw), 1)).astype(np.float16).view(np.uint8)
    return raw.reshape(rows, -1)


def greedy_agreement(model: LlamaModel, cases: list[dict], near: float = 0.3) -> tuple[int, int]:
    """Teacher-force each case's llama.cpp greedy continuation (reference files made by
    data/make_llama_reference.py) in one prefill; (matched argmaxes, tokens).

    llama.cpp quantises activations to Q8 in its CPU matmuls, so its logits differ from
    float32 ones: where our argmax differs, one of the two must have been nearly tied,
    llama.cpp's token within ``near`` of our best logit, or llama.cpp's own best two
    within ``near`` of each other (Gemma 3, "capital of France" step 7: 0.66 for us,
    0.013 for llama.cpp).
    """
    matched = total = 0
    for case in cases:
        feed = case["prompt_ids"] + case["greedy_ids"][:-1]
        seq = SequenceCache(model.new_cache(-(-len(feed) // 16), 16))
        seq.reserve(len(feed))
        mine = model.forward([(seq, feed)], all_logits=True)[0][len(case["prompt_ids"]) - 1:]
        for row, want, their_gap in zip(mine, case["greedy_ids"], case["top2_gaps"]):
            got = int(np.argmax(row))
            total += 1
            matched += got == want
            assert got == want or row[got] - row[want] < near or their_gap < near, (case["prompt"], got, want, row[got] - row[want])
    return matched, total
