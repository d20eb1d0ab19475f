"""Llama forward pass over the paged KV cache: tiny random model against a
naive reference, cache/recompute equivalence, batching isolation, CuPy parity;
the real SmolLM2 GGUF: tokenizer ids, chat template, greedy tokens against
llama.cpp (tests/rag/data/smollm2_llamacpp_reference.json, made by
tests/rag/data/make_llama_reference.py)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from shoal.engine.backend import gpu_available
from shoal.engine.errors import FormatVersionError, InvalidArgumentError, NotFoundError, ResourceExhaustedError
from shoal.rag.models.kv_cache import SequenceCache
from shoal.rag.models.llama import LlamaModel

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
llama_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_tiny)
one_blas_thread = llama_tiny.one_blas_thread
TINY, tiny_model, tiny_tensors, naive_logits = llama_tiny.TINY, llama_tiny.tiny_model, llama_tiny.tiny_tensors, llama_tiny.naive_logits
greedy_agreement = llama_tiny.greedy_agreement

REF = Path(__file__).parent / "data" / "smollm2_llamacpp_reference.json"
TOKENS = [3, 17, 5, 22, 9, 31, 0, 12, 7, 39, 2]


def _run(model: LlamaModel, chunks: list[list[int]], block_size: int = 4) -> np.ndarray:
    """Feed the chunks one step after another into one sequence; all logits stacked."""
    seq = SequenceCache(model.new_cache(16, block_size))
    out = []
    for c in chunks:
        seq.reserve(len(c))
        out.append(model.forward([(seq, c)], all_logits=True)[0])
    return np.concatenate(out)


def test_forward_matches_naive_reference() -> None:
    got = _run(tiny_model(), [TOKENS])
    want = naive_logits(tiny_tensors(), TINY, TOKENS)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_kv_cache_decoding_equals_full_recomputation() -> None:
    model = tiny_model()
    full = _run(model, [TOKENS])
    one_by_one = _run(model, [[t] for t in TOKENS])
    chunked = _run(model, [TOKENS[:3], TOKENS[3:4], TOKENS[4:9], TOKENS[9:]])
    np.testing.assert_allclose(one_by_one, full, atol=5e-5, rtol=1e-5)
    np.testing.assert_allclose(chunked, full, atol=5e-5, rtol=1e-5)


def test_batched_step_equals_sequential_and_pages_are_isolated() -> None:
    model = tiny_model()
    prompts = [TOKENS[:7], TOKENS[2:4], TOKENS[::-1], [5]]
    cache = model.new_cache(32, 2)
    seqs = [SequenceCache(cache) for _ in prompts]
    # interleave admissions so page tables interleave in the pool
    for s, p in zip(seqs, prompts):
        s.reserve(len(p) + 3)
    owned = [set(s.blocks) for s in seqs]
    assert all(a.isdisjoint(b) for i, a in enumerate(owned) for b in owned[i + 1:])
    first = model.forward(list(zip(seqs, prompts)))
    nxt = [[int(np.argmax(lg[-1]))] for lg in first]
    # mixed step: two decode, one prefill of a new request, one decode
    late = SequenceCache(cache)
    late.reserve(5)
    step = model.forward([(seqs[0], nxt[0]), (late, TOKENS[4:9]), (seqs[1], nxt[1]), (seqs[2], nxt[2]), (seqs[3], nxt[3])])
    for i, p in enumerate(prompts):
        alone = _run(model, [p + nxt[i]], block_size=3)
        np.testing.assert_allclose(first[i][-1], alone[len(p) - 1], atol=5e-5, rtol=1e-5)
        np.testing.assert_allclose(step[[0, 2, 3, 4][i]][-1], alone[-1], atol=5e-5, rtol=1e-5)
    np.testing.assert_allclose(step[1][-1], _run(model, [TOKENS[4:9]])[-1], atol=5e-5, rtol=1e-5)


def test_paged_cache_allocation_and_release() -> None:
    cache = tiny_model().new_cache(4, 4)
    a, b = SequenceCache(cache), SequenceCache(cache)
    a.reserve(9)  # 3 blocks
    assert len(a.blocks) == 3 and cache.free_blocks == 1
    with pytest.raises(ResourceExhaustedError):
        b.reserve(5)
    assert cache.free_blocks == 1 and b.blocks == []  # a failed reserve takes nothing
    np.testing.assert_array_equal(a.slots(3, 6), [a.blocks[0] * 4 + 3, a.blocks[1] * 4, a.blocks[1] * 4 + 1])
    a.free()
    assert cache.free_blocks == 4 and a.length == 0


def test_forward_rejects_bad_input() -> None:
    model = tiny_model()
    seq = SequenceCache(model.new_cache(4, 4))
    with pytest.raises(InvalidArgumentError):
        model.forward([(seq, [1, 2])])  # nothing reserved
    seq.reserve(2)
    with pytest.raises(InvalidArgumentError):
        model.forward([(seq, [1, TINY.vocab_size])])
    assert seq.length == 0


@pytest.mark.skipif(not gpu_available(), reason="no usable GPU: CuPy parity needs a CUDA device")
def test_cupy_matches_numpy() -> None:
    import cupy

    gpu = _run(tiny_model("cupy"), [TOKENS[:5], [TOKENS[5]], TOKENS[6:]])
    np.testing.assert_allclose(cupy.asnumpy(gpu), _run(tiny_model(), [TOKENS]), atol=1e-4)


# -- the real model -----------------------------------------------------------

@pytest.fixture(scope="module")
def gguf_model():  # noqa: ANN201
    from shoal.rag.generation.generator import default_gguf_path
    from shoal.rag.models.gguf_model import load_gguf

    try:
        path = default_gguf_path()
    except NotFoundError as exc:
        pytest.skip(str(exc))
    return load_gguf(path)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REF.read_text(encoding="utf-8"))


def test_gguf_tokenizer_matches_llama_cpp(gguf_model, reference) -> None:  # noqa: ANN001
    tok = gguf_model.tokenizer
    for case in reference["tokenize"]:
        ids = tok.encode(case["text"], add_special_tokens=False).ids
        assert ids == case["ids"], case["text"]
        assert tok.decode(ids, skip_special_tokens=False) == case["text"]  # byte-level BPE round trip
    for case in reference["cases"]:
        assert tok.encode(case["prompt"], add_special_tokens=False).ids == case["prompt_ids"]
    assert gguf_model.end_ids >= {gguf_model.eos_id} and tok.id_to_token(gguf_model.eos_id) == "<|im_end|>"


def test_chat_template(gguf_model, reference) -> None:  # noqa: ANN001
    case = reference["cases"][0]
    assert gguf_model.apply_chat_template([{"role": "user", "content": case["chat"]}]) == case["prompt"]
    with_system = gguf_model.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert with_system == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(InvalidArgumentError):
        gguf_model.apply_chat_template([{"role": "user"}])


def test_float32_greedy_tokens_near_llama_cpp(gguf_model, reference) -> None:  # noqa: ANN001
    """The default float32 numerics, teacher-forced over llama.cpp's greedy continuation in one batched prefill.

    llama.cpp quantises activations to Q8 in its CPU matmuls, so its logits differ
    from float32 ones; where our argmax differs, llama.cpp's token must be a
    near-tie for us, and nearly all tokens must match. (numerics="llama.cpp"
    matches exactly: test_ggml_numerics.py.)
    """
    from shoal.rag.models.llama import LlamaConfig

    cfg = LlamaConfig.from_gguf(gguf_model.metadata, gguf_model.architecture, gguf_model.tokenizer.get_vocab_size())
    matched, total = greedy_agreement(LlamaModel(cfg, gguf_model.tensors, "numpy"), reference["cases"])
    assert matched >= 0.95 * total, f"{matched}/{total}"


def test_model_file_errors(tmp_path: Path) -> None:
    from shoal.rag.models.gguf_model import load_gguf

    with pytest.raises(NotFoundError):
        load_gguf(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a GGUF file at all" * 4)
    with pytest.raises(FormatVersionError):
        load_gguf(bad)
    tensors = tiny_tensors()
    del tensors["blk.1.ffn_up.weight"]
    with pytest.raises(FormatVersionError):
        LlamaModel(TINY, tensors, "numpy")
