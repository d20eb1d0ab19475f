"""Generation throughput of the Llama engine on each backend: prefill tok/s, one request's
decode tok/s, and N concurrent requests through continuous batching.

Weights: a GGUF file (``--model``; default SmolLM2-135M-Instruct when installed), or
``--random``: random float32 weights of SmolLM2-135M's shape. Speed does not depend on the
values, and the random model is what the GPU machine can run (the 100 MB model wheel does
not travel there). The numpy and llama.cpp numerics are also timed on CPU with --numerics.
Backends: ``numba`` (the CPU default: Numba kernels on the Q4_1/Q8_0 blocks), ``numpy``
(weights dequantised to float32, BLAS), ``cupy``. Each row carries its ratio to llama.cpp's
one-thread figures on the same file, recorded with llama-cpp-python 0.3.36 when the
generation layer landed (compiling llama.cpp takes ~10 minutes of both shared cores here,
so it is not rebuilt per run).

``--speculative``: greedy RAG answers (chat prompts quoting two Python reference topics,
as the demo builds them) with and without prompt-lookup drafting; reports whether the
tokens are identical, the acceptance rate and the speed-up.

``--llama-cpp``: llama.cpp itself (llama-cpp-python, when importable) on the same file, prompt
and thread count, in the same process, passes interleaved with the numba backend's (Shoal,
llama.cpp, Shoal, ...): decode and prefill tok/s, per CPU-second too, and the ratios per pass.
It is not a project dependency (it compiles llama.cpp from source, ~10 minutes); install it
beside the project with ``pip install --no-deps llama-cpp-python diskcache``.

``--quality``: a labelled question set over the demo corpus (the demo's eight Python
reference topics): retrieval hit rate of the topic that answers each question, whether the
answer cites it, and whether the answer contains a reference phrase of that topic.

    python -m shoal.bench.llm_bench --threads 1 --backends numba,numpy --speculative
    python -m shoal.bench.llm_bench --threads 1 --llama-cpp --passes 3
    python -m shoal.bench.llm_bench --quality --backends numba
    python -m shoal.bench.llm_bench --random --backends numpy,cupy --out llm-bench.json
"""
from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

import numpy as np

# SmolLM2-135M-Instruct's hyper-parameters (from its GGUF metadata).
# llama.cpp (llama-cpp-python 0.3.36), SmolLM2-135M-Instruct Q4_1, one thread, this machine.
LLAMA_CPP_1THREAD = {"decode_tok_s": 144.0, "prefill_tok_s": 237.0}
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3,
                    intermediate_size=1536, head_dim=64, rope_base=100000.0, rms_eps=1e-5, context_length=8192)


def _engine(args: argparse.Namespace, backend: str, numerics: str) -> Any:
    from shoal.rag.generation.engine import GenerationEngine
    from shoal.rag.models.llama import LlamaConfig, LlamaModel, random_llama_tensors

    if args.random:
        config = LlamaConfig(**{**SMOLLM2_135M, "num_layers": args.layers or SMOLLM2_135M["num_layers"]})
        tensors = random_llama_tensors(config)
    else:
        from shoal.rag.generation.generator import resolve_model_path
        from shoal.rag.models.gguf_model import load_gguf

        gguf = load_gguf(resolve_model_path(args.model))
        config = LlamaConfig.from_gguf(gguf.metadata, gguf.architecture, gguf.tokenizer.get_vocab_size())
        tensors = gguf.tensors
    model = LlamaModel(config, tensors, backend, numerics)
    # No end tokens: every request runs its full budget, whatever the weights predict.
    return GenerationEngine(model, lambda ids: "", frozenset(), cache_tokens=args.concurrent * (args.prompt + args.tokens) + 256,
                            num_threads=_threads(args))


def _threads(args: argparse.Namespace) -> int:
    import numba

    return args.threads or numba.config.NUMBA_NUM_THREADS


def measure(args: argparse.Namespace, backend: str, numerics: str) -> dict[str, Any]:
    from shoal.rag.generation import SamplingParams

    engine = _engine(args, backend, numerics)
    rng = np.random.default_rng(0)
    vocab = engine.model.config.vocab_size

    def prompt() -> list[int]:
        return rng.integers(0, vocab, args.prompt).tolist()

    try:
        engine.submit(prompt(), SamplingParams(max_new_tokens=2)).wait()  # warm-up: kernels, caches
        # CPU seconds as well as wall time: on the shared machine a run gets a varying share of the
        # cores, and tokens per CPU-second is what that share does not change (much).
        p0 = prompt()
        c0 = time.process_time()
        engine.submit(p0, SamplingParams(max_new_tokens=1)).wait()
        c1 = time.process_time()
        one = engine.submit(p0, SamplingParams(max_new_tokens=args.tokens)).wait()
        c2 = time.process_time()
        cpu_prefill, cpu_decode = c1 - c0, (c2 - c1) - (c1 - c0)
        prompts = [prompt() for _ in range(args.concurrent)]
        t0 = time.perf_counter()
        handles = [engine.submit(p, SamplingParams(max_new_tokens=args.tokens)) for p in prompts]  # submit does not block
        generated = sum(len(h.wait().token_ids) for h in handles)
        wall = time.perf_counter() - t0
        ref = LLAMA_CPP_1THREAD
        # the recorded llama.cpp figures are SmolLM2's: no ratio for another file
        smollm2 = args.model in (None, "smollm2-135m") and not args.random
        return {
            "backend": backend, "numerics": numerics,
            "prefill_tok_s": round(one.prefill_tokens_per_s, 1), "decode_tok_s": round(one.decode_tokens_per_s, 1),
            "decode_vs_llama_cpp_1t": round(one.decode_tokens_per_s / ref["decode_tok_s"], 2) if smollm2 else None,
            "prefill_vs_llama_cpp_1t": round(one.prefill_tokens_per_s / ref["prefill_tok_s"], 2) if smollm2 else None,
            "prefill_tok_per_cpu_s": round(args.prompt / cpu_prefill, 1) if cpu_prefill > 0 else None,
            "decode_tok_per_cpu_s": round((args.tokens - 1) / cpu_decode, 1) if cpu_decode > 0 else None,
            "concurrent": args.concurrent, "concurrent_generated_tok_s": round(generated / wall, 1),
            "max_batch": engine.stats["max_batch"],
        }
    finally:
        engine.close()


def _timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def measure_vs_llama_cpp(args: argparse.Namespace) -> dict[str, Any] | None:
    """Shoal (numba backend) and llama.cpp on one GGUF file, one prompt, interleaved passes."""
    try:
        import llama_cpp
    except ImportError:
        print("llama.cpp: skipped, llama-cpp-python is not installed")
        return None
    from shoal.rag.generation import SamplingParams
    from shoal.rag.generation.generator import resolve_model_path

    path = str(resolve_model_path(args.model))
    threads = _threads(args)
    engine = _engine(args, "numba", "float32")
    llm = llama_cpp.Llama(model_path=path, n_ctx=args.prompt + args.tokens + 16, n_threads=threads, n_threads_batch=threads,
                          n_batch=512, verbose=False)
    vocab = llm.n_vocab()
    prompt = np.random.default_rng(0).integers(0, min(vocab, engine.model.config.vocab_size), args.prompt).tolist()

    def greedy() -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))
        return int(np.argmax(logits))

    def llama_prefill() -> None:
        llm.reset()
        llm.eval(prompt)

    def llama_decode() -> None:
        tok = greedy()
        for _ in range(args.tokens - 1):
            llm.eval([tok])
            tok = greedy()

    def shoal() -> tuple[float, float, float, float]:
        """(prefill wall, CPU, decode wall, CPU) seconds of one request, timed at its first and last
        token (with two threads on the loaded machine, a full request minus a one-token one, the
        earlier way, went negative)."""
        t0, c0 = time.perf_counter(), time.process_time()
        first = None
        for _ in engine.submit(prompt, SamplingParams(max_new_tokens=args.tokens)):
            first = first or (time.perf_counter(), time.process_time())
        t1, c1 = time.perf_counter(), time.process_time()
        return first[0] - t0, first[1] - c0, t1 - first[0], c1 - first[1]

    passes = []
    try:
        shoal()
        llama_prefill()
        llama_decode()  # warm-up: kernels compiled, pages touched
        for _ in range(args.passes):
            sp_wall, sp_cpu, sd_wall, sd_cpu = shoal()
            lp_wall, lp_cpu = _timed(llama_prefill)
            ld_wall, ld_cpu = _timed(llama_decode)
            n = args.tokens - 1
            row = {
                "shoal_decode_tok_s": round(n / sd_wall, 1), "llama_cpp_decode_tok_s": round(n / ld_wall, 1),
                "shoal_decode_tok_per_cpu_s": round(n / sd_cpu, 1), "llama_cpp_decode_tok_per_cpu_s": round(n / ld_cpu, 1),
                "shoal_prefill_tok_s": round(args.prompt / sp_wall, 1), "llama_cpp_prefill_tok_s": round(args.prompt / lp_wall, 1),
            }
            row["decode_ratio"] = round(ld_wall / sd_wall, 2)
            row["decode_ratio_cpu"] = round(ld_cpu / sd_cpu, 2)
            row["prefill_ratio"] = round(lp_wall / sp_wall, 2)
            passes.append(row)
            print(json.dumps(row), flush=True)
    finally:
        engine.close()
        llm.close()
    ratios = [p["decode_ratio"] for p in passes]
    return {"peer": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})", "model": path.rsplit("/", 1)[-1], "threads": threads,
            "prompt": args.prompt, "tokens": args.tokens, "passes": passes,
            "decode_ratio_range": [min(ratios), max(ratios)],
            "prefill_ratio_range": [min(p["prefill_ratio"] for p in passes), max(p["prefill_ratio"] for p in passes)]}


# Questions over the demo's Python reference topics, each with the topic that answers it.
RAG_QUESTIONS = (
    ("What does the else clause of a for loop do?", "for", "while"),
    ("What does a try statement do when an exception occurs?", "try", "raise"),
    ("What does the break statement do?", "break", "continue"),
    ("What is the with statement used for?", "with", "try"),
)


def rag_prompts(generator: Any, words: int = 250) -> list[list[int]]:
    """Chat prompts as the RAG pipeline builds them: the answering topic as source [1], a neighbour as [2]."""
    import pydoc_data.topics

    from shoal.rag.pipeline import Citation, build_messages

    def cite(n: int, topic: str) -> Citation:
        return Citation(n, f"pydoc:{topic}", 0, 1.0, " ".join(pydoc_data.topics.topics[topic].split()[:words]), topic)

    return [generator.encode(generator.apply_chat_template(build_messages(q, [cite(1, gold), cite(2, other)])))
            for q, gold, other in RAG_QUESTIONS]


def measure_speculative(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """Plain greedy vs prompt-lookup drafting on the same RAG prompts, one request at a time."""
    from shoal.rag.generation import SamplingParams, load_generator

    gen = load_generator(args.model, backend=backend, num_threads=_threads(args))
    try:
        prompts = rag_prompts(gen)
        gen.submit_ids(prompts[0][:16], SamplingParams(max_new_tokens=4, draft="prompt_lookup")).wait()  # warm-up
        runs: dict[str, Any] = {}
        for name, extra in (("plain", {}), ("prompt_lookup", {"draft": "prompt_lookup", "num_draft_tokens": args.draft_tokens})):
            params = SamplingParams(max_new_tokens=args.tokens, **extra)
            t0, c0 = time.perf_counter(), time.process_time()
            results = [gen.submit_ids(p, params).wait() for p in prompts]
            decode_s = sum(r.timings["total_s"] - r.timings["prefill_s"] for r in results)
            runs[name] = {"results": results, "decode_s": decode_s, "wall_s": time.perf_counter() - t0,
                          "cpu_s": time.process_time() - c0, "tokens": sum(len(r.token_ids) for r in results)}
        plain, spec = runs["plain"], runs["prompt_lookup"]
        drafted = sum(r.draft_tokens for r in spec["results"])
        accepted = sum(r.accepted_tokens for r in spec["results"])
        return {
            "backend": backend, "speculative": f"prompt_lookup x{args.draft_tokens}", "answers": len(prompts),
            "identical_tokens": [r.token_ids for r in plain["results"]] == [r.token_ids for r in spec["results"]],
            "acceptance_rate": round(accepted / drafted, 3) if drafted else 0.0,
            "drafted": drafted, "accepted": accepted,
            "plain_decode_tok_s": round(plain["tokens"] / plain["decode_s"], 1),
            "speculative_decode_tok_s": round(spec["tokens"] / spec["decode_s"], 1),
            "decode_speedup": round(plain["decode_s"] / spec["decode_s"], 2),
            "answer_speedup": round(plain["wall_s"] / spec["wall_s"], 2),
            "answer_cpu_speedup": round(plain["cpu_s"] / spec["cpu_s"], 2),
        }
    finally:
        gen.close()


# (question, topic that answers it, phrases of that topic a correct answer contains: any of them)
QUALITY_SET = (
    ("What happens when the iterator of a for loop is exhausted?", "for", ("else", "exhausted", "terminates")),
    ("What is the while statement used for?", "while", ("repeated execution", "as long as")),
    ("How does the if statement choose which suite to execute?", "if", ("one of the suites", "true", "evaluating")),
    ("What does a bare raise statement do with no expression?", "raise", ("re-raise", "active exception")),
    ("Which loop does the break statement terminate?", "break", ("nearest enclosing loop", "enclosing loop")),
    ("What does the continue statement do?", "continue", ("next cycle", "next iteration")),
    ("What does the with statement wrap a block with?", "with", ("context manager",)),
    ("What does the try statement specify for a group of statements?", "try", ("exception handler", "cleanup")),
)
DEMO_TOPICS = ("for", "while", "if", "try", "with", "raise", "break", "continue")


def _cites_only(answer: Any, source: str) -> bool:
    """The answer's [n] markers are all the number of ``source`` among its citations, and there is one."""
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    gold = {c.number for c in answer.citations if c.source == source}
    return bool(numbers) and numbers <= gold


def measure_quality(args: argparse.Namespace, backend: str, k: int = 2) -> dict[str, Any]:
    """Retrieval hit rate, citation correctness and reference-phrase containment over QUALITY_SET."""
    import pydoc_data.topics

    import shoal
    from shoal.rag import Document, RagPipeline, load_embedder
    from shoal.rag.generation import SamplingParams, load_generator

    gen = load_generator(args.model, backend=backend, num_threads=_threads(args))
    try:
        col = shoal.Database().create_collection("quality", dim=(emb := load_embedder()).dim, metric="cosine", index="flat")
        rag = RagPipeline(col, emb, gen, sampling=SamplingParams(max_new_tokens=args.tokens))
        rag.ingest([Document(" ".join(pydoc_data.topics.topics[t].split()[:250]), f"pydoc:{t}", {"title": t}) for t in DEMO_TOPICS])
        rows = []
        for question, gold, phrases in QUALITY_SET:
            answer = rag.ask(question, k=k, min_score=0.2)
            source = f"pydoc:{gold}"
            text = answer.text.lower()
            rows.append({
                "question": question,
                "retrieved_gold": any(c.source == source for c in answer.citations),
                # the answer's own [n] markers name the gold source and no other one (no markers: not
                # correct; "[1], [2]" parroted from the instructions cites everything: not correct either)
                "cites_gold": _cites_only(answer, source),
                "contains_reference": any(p in text for p in phrases),
                "answer": answer.text.strip()[:200],
            })
        n = len(rows)
        return {
            "backend": backend, "model": gen.name, "questions": n, "k": k,
            "retrieval_hit_rate": round(sum(r["retrieved_gold"] for r in rows) / n, 3),
            "citation_correct": round(sum(r["cites_gold"] for r in rows) / n, 3),
            "reference_phrase": round(sum(r["contains_reference"] for r in rows) / n, 3),
            "per_question": rows,
        }
    finally:
        gen.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shoal.bench.llm_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="GGUF path or a named model: smollm2-135m (default), gemma3-270m; with --quality a comma-separated list")
    p.add_argument("--random", action="store_true", help="random weights of SmolLM2-135M's shape instead of a file")
    p.add_argument("--layers", type=int, default=0, help="with --random: fewer layers than SmolLM2's 30 (a quick run)")
    p.add_argument("--backends", default="numba,numpy", help="comma-separated: numba, numpy, cupy (default numba,numpy)")
    p.add_argument("--numerics", default="float32", help="comma-separated: float32, llama.cpp (default float32)")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per request (default 64)")
    p.add_argument("--concurrent", type=int, default=8, help="concurrent requests (default 8)")
    p.add_argument("--threads", type=int, default=0, help="BLAS and Numba (engine) threads (default: all cores)")
    p.add_argument("--speculative", action="store_true", help="also time prompt-lookup speculative decoding on RAG answers")
    p.add_argument("--draft-tokens", type=int, default=5, help="with --speculative: tokens per draft (default 5)")
    p.add_argument("--llama-cpp", action="store_true", help="interleaved passes against llama.cpp on the same file (numba backend)")
    p.add_argument("--passes", type=int, default=2, help="with --llama-cpp: interleaved passes (default 2)")
    p.add_argument("--quality", action="store_true", help="only the labelled RAG question set (answer quality per model)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from shoal.engine.backend import gpu_available

    with threadpool_limits(args.threads or None, user_api="blas"):
        return _run_all(args, gpu_available())


def _run_all(args: argparse.Namespace, gpu: bool) -> int:
    """Every (backend, numerics) pair that can run here, one JSON line each."""
    rows = []
    if args.llama_cpp:
        row = measure_vs_llama_cpp(args)
        if row is not None:
            print(json.dumps({k: v for k, v in row.items() if k != "passes"}), flush=True)
        return 0
    if args.quality:
        for model in (args.model or "smollm2-135m").split(","):
            for backend in args.backends.split(","):
                rows.append(measure_quality(argparse.Namespace(**{**vars(args), "model": model}), backend))
                print(json.dumps(rows[-1], indent=1), flush=True)
        summary = [{k: r[k] for k in ("model", "backend", "retrieval_hit_rate", "citation_correct", "reference_phrase")} for r in rows]
        print(json.dumps(summary), flush=True)
        return 0
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
        if args.speculative and not args.random and backend != "cupy":
            row = measure_speculative(args, backend)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            weights = "random" if args.random else (args.model or "SmolLM2-135M-Instruct")
            json.dump({"weights": weights, "blas_threads": args.threads or "all", "results": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
