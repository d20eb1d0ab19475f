"""numerics="llama.cpp": each kernel against an independent float64 reading
(and gguf's own dequantiser), then the real SmolLM2 model against llama.cpp
itself: top logits bit for bit, greedy tokens identical.

The reference (data/smollm2_llamacpp_reference.json) comes from
llama-cpp-python 0.3.36 built with AVX512 on x86 (make_llama_reference.py).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from shoal.engine.backend import Backend
from shoal.engine.errors import FormatVersionError, InvalidArgumentError, NotFoundError
from shoal.rag.kernels import ggml_numpy as gk

REF = Path(__file__).parent / "data" / "smollm2_llamacpp_reference.json"
F32 = np.float32


def _raw_blocks(rng: np.random.Generator, qtype: int, out: int, inp: int) -> np.ndarray:
    """Random GGUF block bytes (rows, bytes per row) with sane f16 scales."""
    nb = inp // 32
    d = rng.uniform(0.001, 0.05, (out, nb)).astype(np.float16)
    if qtype == gk.GGML_Q4_1:
        m = rng.uniform(-0.2, 0.0, (out, nb)).astype(np.float16)
        qs = rng.integers(0, 256, (out, nb, 16), dtype=np.uint8)
        blocks = np.concatenate([d[..., None].view(np.uint8), m[..., None].view(np.uint8), qs], axis=2)
    else:
        qs = rng.integers(-128, 128, (out, nb, 32), dtype=np.int8).view(np.uint8)
        blocks = np.concatenate([d[..., None].view(np.uint8), qs], axis=2)
    return blocks.reshape(out, -1)


def _gguf_dequantize(raw: np.ndarray, qtype: int, shape: tuple[int, int]) -> np.ndarray:
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    return dequantize(raw, GGMLQuantizationType(qtype)).reshape(shape).astype(np.float64)


def test_fma_rounds_once() -> None:
    a = F32(1 + 2**-12)
    # a*a = 1 + 2**-11 + 2**-24: the separate product loses 2**-24 (a tie, to even); the FMA keeps it.
    assert gk.fma(a, a, F32(-1)) == F32(2**-11 + 2**-24)
    assert F32(a * a) - F32(1) == F32(2**-11)
    assert gk.fnma(a, a, F32(1)) == -F32(2**-11 + 2**-24)


def test_expf_accuracy_and_limits() -> None:
    x = np.linspace(-100, 88, 200_001, dtype=F32)
    got = gk.expf(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(want.astype(F32)).astype(np.float64)
    normal = want > np.finfo(F32).tiny
    assert np.max(np.abs(got - want)[normal] / ulp[normal]) < 2.5  # measured 2.18 ulp over this range
    assert gk.expf(np.array([-np.inf, -200.0, 0.0, 100.0], F32)).tolist() == [0.0, 0.0, 1.0, np.inf]


def test_quantize_q8_blocks() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, (5, 96)).astype(F32)
    x[2, :32] = 0
    x[3, :32] = np.r_[127.0, 0.5, 1.5, -2.5, np.zeros(28)].astype(F32)  # amax 127: scale 1, halves round to even
    d, s, q = gk.quantize_q8(x)
    assert q.shape == (5, 3, 32) and d.shape == s.shape == (5, 3)
    assert np.all(np.abs(q) <= 127) and np.all(q == np.rint(q))
    # half a step of rounding, plus |q| <= 127 times the f16 rounding of d (2**-11 relative)
    assert np.all(np.abs(q * d[..., None] - x.reshape(5, 3, 32)) <= d[..., None] * (0.5 + 127 * 2**-11) + 1e-6)
    assert d[2, 0] == 0 and not q[2, 0].any()
    assert q[3, 0, :4].tolist() == [127, 0, 2, -2]
    np.testing.assert_allclose(s, d * q.sum(-1), rtol=1e-3)


@pytest.mark.parametrize("qtype", [gk.GGML_Q4_1, gk.GGML_Q8_0])
def test_quant_matmul_against_float64(qtype: int) -> None:
    rng = np.random.default_rng(qtype)
    out, inp = 48, 128
    raw = _raw_blocks(rng, qtype, out, inp)
    w = gk.QuantBlocks.from_raw(qtype, raw, (out, inp))
    dense = _gguf_dequantize(raw, qtype, (out, inp))
    # Rows come back as gguf dequantises them (Q4_1's offset fused: within an ulp).
    np.testing.assert_allclose(w.dequantize_rows(np.array([3, 0, 47])), dense[[3, 0, 47]], rtol=1e-6, atol=1e-7)
    x = rng.normal(0, 1, (7, inp)).astype(F32)
    d8, s8, q8 = gk.quantize_q8(x)
    xq = (q8 * d8[..., None]).reshape(7, inp).astype(np.float64)  # what the kernel multiplies
    want = xq @ dense.T
    if qtype == gk.GGML_Q4_1:
        # The offset meets the activation block sum as Q8_1 stores it, s = f16(d * sum(q)), not d16 * sum(q).
        m = raw.reshape(out, inp // 32, 20)[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        want += (s8 - d8 * q8.sum(-1)).astype(np.float64) @ m.T
    np.testing.assert_allclose(gk.quant_matmul(x, w), want, rtol=1e-5, atol=1e-5)
    fused = gk.QuantBlocks.concat([w, w])
    np.testing.assert_array_equal(gk.quant_matmul(x, fused), np.tile(gk.quant_matmul(x, w), 2))


def test_unsupported_weights_are_refused() -> None:
    with pytest.raises(FormatVersionError, match="float32"):
        gk.QuantBlocks.from_raw(12, np.zeros((4, 144), np.uint8), (4, 256))  # Q4_K
    with pytest.raises(FormatVersionError, match="float32"):
        gk.GGMLLinear([np.zeros((4, 32), F32)])


@pytest.mark.parametrize("n", [64, 256, 80])
def test_f16_dot_orders_against_float64(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = gk.to_f16(rng.normal(0, 1, (6, n))), gk.to_f16(rng.normal(0, 1, (6, n)))
    want = (a.astype(np.float64) * b).sum(-1)
    for dot in (gk.dot_f16_vec, gk.dot_f16_tiled):
        np.testing.assert_allclose(dot(a, b), want, rtol=1e-5, atol=1e-5)


def test_softmax_rope_attention_against_float64() -> None:
    rng = np.random.default_rng(7)
    scores = rng.normal(0, 4, (3, 5, 64)).astype(F32)
    scores[..., 40:] = -np.inf
    p = gk.softmax_rows(scores)
    ref = np.exp(scores.astype(np.float64) - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(p, ref / ref.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert not p[..., 40:].any()

    tables = gk.RopeTables(16, 10000.0)
    pos = np.array([0, 1, 7, 300])
    cos, sin = tables(pos)
    ang = pos[:, None] * 10000.0 ** (-np.arange(0, 16, 2) / 16)
    np.testing.assert_allclose(cos, np.cos(ang), atol=2e-5)  # theta accumulates in float32, as in ggml
    x = rng.normal(0, 1, (4, 2, 16)).astype(F32)
    rot = gk.rope(x, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(rot, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)

    t, s, heads, kv, hd = 3, 5, 4, 2, 64
    q = rng.normal(0, 1, (t, heads, hd)).astype(F32)
    k, v = gk.to_f16(rng.normal(0, 1, (s, kv, hd))), gk.to_f16(rng.normal(0, 1, (s, kv, hd)))
    for tiled in (True, False):
        got = gk.attention(q, k, v, s - t, kv, tiled).reshape(t, heads, hd)
        for h in range(heads):
            sc = q[:, h].astype(np.float64) @ k[:, h // 2].T.astype(np.float64) / np.sqrt(hd)
            sc[np.arange(s)[None, :] > np.arange(s - t, s)[:, None]] = -np.inf
            w = np.exp(sc - sc.max(-1, keepdims=True))
            np.testing.assert_allclose(got[:, h], (w / w.sum(-1, keepdims=True)) @ v[:, h // 2], atol=2e-3)


def test_numerics_choice_is_validated() -> None:
    from shoal.rag.models.llama import LlamaModel
    from shoal.rag.cli import NUMERICS as CLI_CHOICES
    from shoal.rag.models.numerics import NUMERICS, LlamaCppNumerics

    spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    assert CLI_CHOICES == NUMERICS
    with pytest.raises(InvalidArgumentError, match="numerics"):
        LlamaModel(tiny.TINY, tiny.tiny_tensors(), "numpy", numerics="bf16")
    with pytest.raises(FormatVersionError, match="quantised"):
        LlamaModel(tiny.TINY, tiny.tiny_tensors(), "numpy", numerics="llama.cpp")  # float weights
    with pytest.raises(InvalidArgumentError, match="numpy only"):
        LlamaCppNumerics(tiny.TINY, Backend("cupy"))


# -- the real model against llama.cpp ---------------------------------------------


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REF.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def exact_model():  # noqa: ANN201
    from shoal.rag.generation.generator import default_gguf_path
    from shoal.rag.models.gguf_model import load_gguf
    from shoal.rag.models.llama import LlamaConfig, LlamaModel

    try:
        gguf = load_gguf(default_gguf_path())
    except NotFoundError as exc:
        pytest.skip(str(exc))
    cfg = LlamaConfig.from_gguf(gguf.metadata, gguf.architecture, gguf.tokenizer.get_vocab_size())
    return LlamaModel(cfg, gguf.tensors, "numpy", numerics="llama.cpp")


def test_logits_are_llama_cpp_bit_for_bit(exact_model, reference) -> None:  # noqa: ANN001
    """Prompt in one batch, then one token per step, as llama.cpp ran: the top logits must be equal, not close."""
    from shoal.rag.models.kv_cache import SequenceCache

    cache = exact_model.new_cache(16, 16)
    for case in reference["cases"]:
        seq = SequenceCache(cache)
        seq.reserve(len(case["prompt_ids"]) + len(case["top_logits"]))
        feed = case["prompt_ids"]
        for step, top in enumerate(case["top_logits"]):
            logits = exact_model.forward([(seq, feed)])[0][0]
            assert logits[top["ids"]].tolist() == top["logits"], (case["prompt"][-40:], step)
            feed = [case["greedy_ids"][step]]
        seq.free()


def test_greedy_generation_is_llama_cpp_token_for_token(reference) -> None:  # noqa: ANN001
    """Every prompt decoded at once through the batching engine: each must still produce llama.cpp's tokens."""
    from shoal.rag.generation import SamplingParams, load_generator

    try:
        gen = load_generator(numerics="llama.cpp")
    except NotFoundError as exc:
        pytest.skip(str(exc))
    try:
        handles = [gen.submit_ids(c["prompt_ids"], SamplingParams(max_new_tokens=len(c["greedy_ids"]))) for c in reference["cases"]]
        for case, handle in zip(reference["cases"], handles):
            assert handle.wait().token_ids == case["greedy_ids"], case["prompt"][-40:]
    finally:
        gen.close()
