"""Speculative decoding: drafts, lossless greedy verification with rollback,
the rejection-sampling rule, and the engine's accounting."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from shoal.engine.errors import InvalidArgumentError
from shoal.rag.generation import GenerationEngine, SamplingParams
from shoal.rag.generation.sampling import sampling_distribution
from shoal.rag.generation.speculative import PromptLookupDrafter, accept
from shoal.rag.models.kv_cache import SequenceCache

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
llama_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_tiny)
one_blas_thread = llama_tiny.one_blas_thread

# Repetitive prompts (as RAG prompts quote their sources) and plain ones.
PROMPTS = [[3, 17, 5, 9, 3, 17, 5, 9, 3, 17], [22, 9, 31, 0, 12, 7], [1, 2, 3, 4, 5, 1, 2, 3], [40]]


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return llama_tiny.quantized_model()


def run(engine: GenerationEngine, prompts, params: SamplingParams) -> list:  # noqa: ANN001
    handles = [engine.submit(p, params) for p in prompts]
    return [h.wait() for h in handles]


def greedy(engine: GenerationEngine, **kw) -> list[list[int]]:  # noqa: ANN003
    return [r.token_ids for r in run(engine, PROMPTS, SamplingParams(max_new_tokens=40, **kw))]


def test_prompt_lookup_proposes_what_followed_the_last_ngram() -> None:
    d = PromptLookupDrafter(max_ngram=3)
    assert d.propose(0, [5, 6, 7, 8, 9, 6, 7], 3) == [8, 9, 6]  # "6 7" seen before, followed by 8 9 6
    assert d.propose(0, [1, 2, 3, 1, 2, 9, 1, 2], 2) == [9, 1]  # the latest occurrence wins
    assert d.propose(0, [1, 2, 3, 5, 6, 1, 2, 3], 2) == [5, 6]  # the longest n-gram first
    assert d.propose(0, [4, 5, 6], 3) == []  # nothing repeats
    assert d.propose(0, [4, 5, 6, 5], 3) == []  # a one-token match is too weak by default
    assert PromptLookupDrafter(min_ngram=1).propose(0, [4, 5, 6, 5], 3) == [6, 5]
    assert d.propose(0, [7], 3) == []


@pytest.mark.parametrize("num_draft", [1, 3, 8])
def test_prompt_lookup_greedy_is_identical_to_plain_greedy(model, num_draft) -> None:  # noqa: ANN001
    plain = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=1024)
    spec = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=1024)
    try:
        want = greedy(plain)
        got = greedy(spec, draft="prompt_lookup", num_draft_tokens=num_draft)
        assert got == want
        assert spec.stats["drafted"] > 0 and spec.stats["accepted"] > 0
    finally:
        plain.close()
        spec.close()
    # Accepted drafts never cost extra passes. Counted for one request alone: with several, how many
    # share a step depends on when each was admitted (thread timing), not on drafting.
    plain = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=1024)
    spec = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=1024)
    try:
        run(plain, PROMPTS[:1], SamplingParams(max_new_tokens=40))
        run(spec, PROMPTS[:1], SamplingParams(max_new_tokens=40, draft="prompt_lookup", num_draft_tokens=num_draft))
        assert spec.stats["steps"] <= plain.stats["steps"]
    finally:
        plain.close()
        spec.close()


def test_llama_cpp_numerics_stay_exact_under_speculation() -> None:
    """Verification runs each position as a decode step, so even llama.cpp's decode path is kept."""
    m = llama_tiny.quantized_model(backend="numpy", numerics="llama.cpp")
    plain = GenerationEngine(m, lambda ids: "", frozenset(), cache_tokens=1024)
    spec = GenerationEngine(m, lambda ids: "", frozenset(), cache_tokens=1024)
    try:
        assert greedy(spec, draft="prompt_lookup", num_draft_tokens=4) == greedy(plain)
    finally:
        plain.close()
        spec.close()


@pytest.mark.parametrize("seed", [0, 7])  # the same model (everything accepted) and a different one
def test_draft_model_greedy_is_identical(model, seed) -> None:  # noqa: ANN001
    drafter = model if seed == 0 else llama_tiny.quantized_model(seed=seed)
    plain = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=1024)
    spec = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=1024, draft_model=drafter)
    try:
        results = run(spec, PROMPTS, SamplingParams(max_new_tokens=30, draft="model", num_draft_tokens=4))
        assert [r.token_ids for r in results] == [r.token_ids for r in run(plain, PROMPTS, SamplingParams(max_new_tokens=30))]
        drafted, accepted = sum(r.draft_tokens for r in results), sum(r.accepted_tokens for r in results)
        assert drafted > 0 and 0 <= accepted <= drafted
        if seed == 0:
            assert accepted == drafted
        assert spec.drafters["model"].cache.free_blocks == spec.drafters["model"].cache.num_blocks  # released
    finally:
        plain.close()
        spec.close()


def test_speculative_sampling_runs_and_respects_limits(model) -> None:  # noqa: ANN001
    engine = GenerationEngine(model, lambda ids: "", frozenset({0}), cache_tokens=1024)
    try:
        params = SamplingParams(max_new_tokens=17, temperature=0.8, top_k=20, seed=3, draft="prompt_lookup", num_draft_tokens=6)
        for r in run(engine, PROMPTS, params):
            assert 1 <= len(r.token_ids) <= 17
            assert r.finish_reason in ("stop", "length")
            assert r.accepted_tokens <= r.draft_tokens
        assert engine.cache.free_blocks == engine.cache.num_blocks
    finally:
        engine.close()


def test_rejection_rule_keeps_the_target_distribution() -> None:
    """Whatever the (deterministic) draft, the first emitted token is distributed as p."""
    logits = np.array([[2.0, 1.0, 0.5, -1.0, 0.0]] * 2, dtype=np.float32)
    params = SamplingParams(temperature=1.0)
    p = sampling_distribution(logits[0], 1.0)
    rng = np.random.default_rng(0)
    n = 20000
    for draft in ([0], [3]):
        first = np.bincount([accept(logits, draft, params, [], rng)[0] for _ in range(n)], minlength=5) / n
        np.testing.assert_allclose(first, p, atol=0.015)


def test_greedy_acceptance_stops_at_the_first_disagreement() -> None:
    logits = np.full((4, 6), -5.0, np.float32)
    logits[0, 2] = logits[1, 4] = logits[2, 1] = logits[3, 5] = 5.0  # argmaxes 2, 4, 1, 5
    params = SamplingParams()
    assert accept(logits, [2, 4, 1], params, [], np.random.default_rng()) == [2, 4, 1, 5]  # all + bonus
    assert accept(logits, [2, 3, 1], params, [], np.random.default_rng()) == [2, 4]  # corrected at the second


def test_bad_draft_settings_are_rejected(model) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgumentError, match="draft must be"):
        SamplingParams(draft="ngram").validate()
    with pytest.raises(InvalidArgumentError, match="num_draft_tokens"):
        SamplingParams(draft="prompt_lookup", num_draft_tokens=0).validate()
    engine = GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=256)
    try:
        with pytest.raises(InvalidArgumentError, match="draft model"):
            engine.submit([1, 2], SamplingParams(draft="model"))
    finally:
        engine.close()


def test_truncate_rolls_back_positions(model) -> None:  # noqa: ANN001
    seq = SequenceCache(model.new_cache(8))
    seq.reserve(20)
    seq.length = 20
    seq.truncate(13)
    assert seq.length == 13 and len(seq.blocks) == 2
    with pytest.raises(InvalidArgumentError):
        seq.truncate(14)
