"""Throughput of the query layer's models (pytest-benchmark; skipped by default).

    .venv/bin/python -m pytest tests/rag/test_generation_bench.py --benchmark-only --benchmark-enable -q -s

Prints texts/s for MiniLM and tokens/s for SmolLM2 prefill, single-request
decode and batched decode through the engine (continuous batching).
"""
from __future__ import annotations

import threading
import time

import pytest

from shoal.engine.errors import NotFoundError
from shoal.rag.generation import SamplingParams, load_generator

PROMPT = "Explain how an inverted file index speeds up nearest neighbour search. " * 4


@pytest.fixture(scope="module")
def generator():  # noqa: ANN201
    try:
        gen = load_generator(cache_tokens=4096)
    except NotFoundError as exc:
        pytest.skip(str(exc))
    yield gen
    gen.close()


def test_bench_minilm_encode(benchmark) -> None:  # noqa: ANN001
    from shoal.rag.embedders import load_embedder

    emb = load_embedder("minilm")
    texts = [f"sentence number {i} about vector search and embeddings" for i in range(128)]
    benchmark.pedantic(emb.encode, args=(texts,), rounds=3)
    print(f"\nminilm: {len(texts) / benchmark.stats.stats.mean:.1f} texts/s")


def test_bench_prefill_and_decode(benchmark, generator) -> None:  # noqa: ANN001
    params = SamplingParams(max_new_tokens=32)
    res = benchmark.pedantic(generator.generate_prompt, args=(PROMPT, params), rounds=2)
    print(f"\nsmollm2 1 request: prefill {res.prefill_tokens_per_s:.1f} tok/s ({res.prompt_tokens} tokens), "
          f"decode {res.decode_tokens_per_s:.1f} tok/s")


@pytest.mark.parametrize("n", [8])
def test_bench_batched_decode(benchmark, generator, n: int) -> None:  # noqa: ANN001
    params = SamplingParams(max_new_tokens=32)

    def run() -> float:
        results = [None] * n
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, generator.generate_prompt(f"{i}. {PROMPT}", params)))
                   for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(len(r.token_ids) for r in results) / (time.perf_counter() - t0)

    rate = benchmark.pedantic(run, rounds=1)
    print(f"\nsmollm2 {n} concurrent requests: {rate:.1f} generated tok/s overall (prefill included), "
          f"max batch {generator.engine.stats['max_batch']}")
