"""Beam search against exhaustive search on a tiny random model, and the
copy-on-write sharing of KV pages between sequences."""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from shoal.engine.errors import InvalidArgumentError, ResourceExhaustedError
from shoal.rag.generation import GenerationEngine, SamplingParams
from shoal.rag.generation.beam import beam_search, log_softmax
from shoal.rag.models.kv_cache import SequenceCache
from shoal.rag.models.llama import LlamaConfig, LlamaModel, random_llama_tensors

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
llama_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_tiny)
one_blas_thread = llama_tiny.one_blas_thread

SMALL_VOCAB = LlamaConfig(vocab_size=5, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=48, head_dim=8, context_length=64)


@pytest.fixture(scope="module")
def model() -> LlamaModel:
    return LlamaModel(SMALL_VOCAB, random_llama_tensors(SMALL_VOCAB, seed=3), "numpy")


def sequence_logprob(model: LlamaModel, prompt: list[int], tokens: list[int]) -> float:
    """Log-probability of ``tokens`` after ``prompt``, from one fresh all-logits pass."""
    seq = SequenceCache(model.new_cache(16, 8))
    seq.reserve(len(prompt) + len(tokens))
    logits = model.forward([(seq, prompt + tokens)], all_logits=True)[0]
    lp = log_softmax(np.asarray(logits))
    return float(sum(lp[len(prompt) - 1 + i, t] for i, t in enumerate(tokens)))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beams_find_the_exhaustive_optimum(model, length_penalty) -> None:  # noqa: ANN001
    """With num_beams = V^(L-1) nothing is pruned, so beam search must return the brute-force argmax."""
    prompt, steps, vocab = [1, 4, 2], 3, SMALL_VOCAB.vocab_size
    end = frozenset({0})

    def score(toks: tuple[int, ...]) -> float:
        return sequence_logprob(model, prompt, list(toks)) / len(toks) ** length_penalty

    candidates = []  # every sequence ending at its first end token, or running the full budget
    for n in range(1, steps + 1):
        for toks in itertools.product(range(vocab), repeat=n):
            if all(t not in end for t in toks[:-1]) and (toks[-1] in end or n == steps):
                candidates.append(toks)
    best = max(candidates, key=score)
    got = beam_search(model, model.new_cache(256, 4), prompt, vocab ** (steps - 1), steps, end, length_penalty, early_stopping=False)
    assert tuple(got.tokens) == best
    assert got.score(length_penalty) == pytest.approx(score(best), abs=1e-5)


def test_one_beam_is_greedy(model) -> None:  # noqa: ANN001
    engine = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=512)
    try:
        want = engine.submit([1, 2, 3], SamplingParams(max_new_tokens=12)).wait().token_ids
        got = beam_search(model, engine.cache, [1, 2, 3], 1, 12, frozenset())
        assert got.tokens == want
    finally:
        engine.close()


def test_engine_streams_the_best_beam_and_frees_every_page(model) -> None:  # noqa: ANN001
    engine = GenerationEngine(model, lambda ids: "".join(map(str, ids)), frozenset({0}), cache_tokens=1024, block_size=4)
    try:
        params = SamplingParams(max_new_tokens=10, num_beams=4, length_penalty=0.5)
        plain = engine.submit([3, 1], SamplingParams(max_new_tokens=10))  # shares the scheduler with the beams
        handle = engine.submit([1, 3, 2, 2], params)
        events = list(handle)
        result = handle.result
        assert [e.token_id for e in events] == result.token_ids and 1 <= len(result.token_ids) <= 10
        direct = beam_search(model, engine.cache, [1, 3, 2, 2], 4, 10, frozenset({0}), 0.5)
        assert result.token_ids == direct.tokens[: len(result.token_ids)]
        plain.wait()
        assert engine.cache.free_blocks == engine.cache.num_blocks
    finally:
        engine.close()


def test_beam_settings_are_checked(model) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgumentError, match="deterministic"):
        SamplingParams(num_beams=2, temperature=0.7).validate()
    with pytest.raises(InvalidArgumentError, match="num_beams"):
        SamplingParams(num_beams=0).validate()
    engine = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=64, block_size=4)
    try:
        with pytest.raises(ResourceExhaustedError, match="beams"):
            engine.submit([1, 2], SamplingParams(num_beams=8, max_new_tokens=40))
    finally:
        engine.close()


def test_copy_on_write_never_changes_another_sequence(model) -> None:  # noqa: ANN001
    """A fork shares the parent's pages; writing either side copies the partly filled page, never the other's keys."""
    cache = model.new_cache(32, 4)
    parent = SequenceCache(cache)
    parent.reserve(6)
    model.forward([(parent, [1, 2, 3, 4, 0, 2])])  # 6 positions: one full page, one half page
    before = cache.k[:, parent.slots(0, 6)].copy()
    child = parent.fork()
    assert child.blocks == parent.blocks and cache.free_blocks == 30
    child.reserve(3)
    assert child.blocks[0] == parent.blocks[0] and child.blocks[1] != parent.blocks[1]  # the half page was copied
    model.forward([(child, [4, 4, 1])])
    parent.reserve(1)
    model.forward([(parent, [3])])
    np.testing.assert_array_equal(cache.k[:, parent.slots(0, 6)], before)
    np.testing.assert_array_equal(cache.k[:, child.slots(0, 6)], before)
    # Each side's continuation equals an unshared recomputation.
    for seq, toks in ((child, [1, 2, 3, 4, 0, 2, 4, 4, 1]), (parent, [1, 2, 3, 4, 0, 2, 3])):
        solo = SequenceCache(cache)
        solo.reserve(len(toks))
        model.forward([(solo, toks)])
        np.testing.assert_allclose(cache.k[:, solo.slots(0, len(toks))], cache.k[:, seq.slots(0, len(toks))], rtol=1e-5, atol=1e-6)
        solo.free()
    child.free()
    parent.free()
    assert cache.free_blocks == 32
