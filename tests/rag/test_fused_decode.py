"""The one-call decode step (kernels/decode_numba.py) against the per-operation layer loop on
the same quantised model, and its independence from whatever else shares the batch."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from shoal.rag.kernels.decode_numba import FusedDecoder
from shoal.rag.models.kv_cache import SequenceCache

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
llama_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_tiny)
one_blas_thread = llama_tiny.one_blas_thread
quantized_model, tiny_model = llama_tiny.quantized_model, llama_tiny.tiny_model


def _decode_run(model, prompts: list[list[int]], steps: int) -> list[np.ndarray]:  # noqa: ANN001
    """Prefill each prompt, then ``steps`` batched greedy decode steps; the logits of every step."""
    cache = model.new_cache(64, 8)
    seqs = [SequenceCache(cache) for _ in prompts]
    for s, p in zip(seqs, prompts):
        s.reserve(len(p) + steps)
    last = model.forward(list(zip(seqs, prompts)))
    out = []
    for _ in range(steps):
        nxt = [[int(np.argmax(lg[-1]))] for lg in last]
        last = model.forward(list(zip(seqs, nxt)))
        out.append(np.concatenate(last))
    return out


def test_quantised_llama_takes_the_fused_step_and_float_models_do_not() -> None:
    assert isinstance(quantized_model("numba").fused_decode, FusedDecoder)
    assert quantized_model("numpy").fused_decode is None
    assert quantized_model("numba", numerics="llama.cpp").fused_decode is None
    assert tiny_model("numba").fused_decode is None  # float weights: no block matrices


def test_fused_step_equals_the_layer_loop() -> None:
    fused = quantized_model("numba")
    loop = quantized_model("numba")
    loop.fused_decode = None
    prompts = [[1, 5, 9, 2], [7, 3], [4, 4, 4, 4, 4, 4, 4, 11, 30]]  # different lengths: ragged attention
    for a, b in zip(_decode_run(fused, prompts, 6), _decode_run(loop, prompts, 6)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(b).max())


def test_fused_rows_do_not_depend_on_the_batch() -> None:
    """A decode row alone, beside other decode rows, or beside a prefill gives the same logits bit for bit."""
    model = quantized_model("numba")
    cache = model.new_cache(64, 8)

    def fresh(prompt: list[int]) -> SequenceCache:
        s = SequenceCache(cache)
        s.reserve(len(prompt) + 2)
        model.forward([(s, prompt)])
        return s

    alone = fresh([3, 1, 4, 1, 5])
    ref = model.forward([(alone, [9])])[0]
    together, other = fresh([3, 1, 4, 1, 5]), fresh([2, 7])
    newcomer = SequenceCache(cache)
    newcomer.reserve(6)
    got = model.forward([(other, [8]), (together, [9]), (newcomer, [1, 2, 3, 4, 5, 6])])
    np.testing.assert_array_equal(got[1], ref)
    assert got[2].shape == (1, model.config.vocab_size)


def test_verification_rows_equal_one_token_decoding() -> None:
    model = quantized_model("numba")
    cache = model.new_cache(64, 8)
    a, b = SequenceCache(cache), SequenceCache(cache)
    for s in (a, b):
        s.reserve(12)
        model.forward([(s, [5, 6, 7])])
    draft = [10, 11, 12, 13]
    verified = model.forward([(a, draft)], verify=[0])[0]
    one_by_one = np.concatenate([model.forward([(b, [t])])[0] for t in draft])
    np.testing.assert_array_equal(verified, one_by_one)


def test_mixed_layer_types_keep_the_layer_loop() -> None:
    """A model whose layers differ in block type cannot stack its matrices: it decodes per operation."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    from shoal.rag.models.gguf_model import QuantizedTensor
    from shoal.rag.models.llama import LlamaModel, random_llama_tensors

    QTINY = llama_tiny.QTINY
    tensors = llama_tiny.quantized_tensors(QTINY)
    w = random_llama_tensors(QTINY)["blk.1.ffn_down.weight"]
    tensors["blk.1.ffn_down.weight"] = QuantizedTensor("d", int(GGMLQuantizationType.Q8_0), quantize(w, GGMLQuantizationType.Q8_0), w.shape)
    assert LlamaModel(QTINY, tensors, "numba").fused_decode is None
