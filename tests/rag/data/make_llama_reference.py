"""Regenerate smollm2_llamacpp_reference.json: llama.cpp's tokenization and
greedy tokens for SmolLM2-135M-Instruct (Q4_1), the reference our numpy Llama
must reproduce.

Run in a throwaway venv, never the project's:
    python -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install llama-cpp-python jinja2
    /tmp/llamavenv/bin/python tests/rag/data/make_llama_reference.py <path to .gguf>
Prompts are chat-templated here with the GGUF's own template (jinja2, same
options as transformers), tokenized by llama.cpp with special-token parsing,
then decoded greedily (argmax of llama.cpp's logits, one token at a time).
For the first steps the top logits are kept too: numerics="llama.cpp" must
reproduce them bit for bit (they are float32 values, exact in JSON).
"""
import json
import sys
from pathlib import Path

import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment
import llama_cpp
from llama_cpp import Llama

CHATS = [
    "What is the capital of France?",
    "Write a haiku about vector databases.",
    "Explain in two sentences what a nearest neighbour search is.",
    "List three prime numbers greater than 100.",
]
RAW = ["The quick brown fox", "def fibonacci(n):", "Hello there"]  # the last: a 2-token prefill
TOKENIZE = [
    "Hello world",
    " leading space and  double  spaces\n\nnew lines\ttab",
    "numbers 1234567 and 3.14159",
    "naïve café — 日本語 🚀 emoji",
    "<|im_start|>user\nhi<|im_end|>",
    "don't won't I'll we've",
]
MAX_NEW = 40
TOP_STEPS, TOP_K = 3, 8


def main(path: str) -> None:
    llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    template = llm.metadata["tokenizer.chat_template"]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    prompts = [
        env.from_string(template).render(messages=[{"role": "user", "content": c}], add_generation_prompt=True)
        for c in CHATS
    ] + RAW
    eos = {llm.token_eos(), 0, 2}
    cases = []
    for prompt, chat in zip(prompts, CHATS + [None] * len(RAW)):
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        out, gaps, tops = [], [], []
        for step in range(MAX_NEW):
            # Last row of llama.cpp's logits (the high-level scores buffer stays empty without logits_all).
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
            top2 = np.sort(logits)[-2:]
            tok = int(np.argmax(logits))
            out.append(tok)
            gaps.append(float(top2[1] - top2[0]))
            if step < TOP_STEPS:
                best = np.argsort(-logits, kind="stable")[:TOP_K]
                tops.append({"ids": [int(i) for i in best], "logits": [float(logits[i]) for i in best]})
            if tok in eos:
                break
            llm.eval([tok])
        cases.append({"chat": chat, "prompt": prompt, "prompt_ids": ids, "greedy_ids": out, "top2_gaps": gaps, "top_logits": tops})
        print(chat or prompt, "->", llm.detokenize(out).decode("utf-8", "replace"))
    tokenized = [{"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)} for t in TOKENIZE]
    dest = Path(__file__).with_name("smollm2_llamacpp_reference.json")
    meta = {"model": Path(path).name, "llama_cpp_python": llama_cpp.__version__, "max_new_tokens": MAX_NEW}
    dest.write_text(json.dumps({**meta, "cases": cases, "tokenize": tokenized}, indent=1, ensure_ascii=False))
    print("wrote", dest)


if __name__ == "__main__":
    main(sys.argv[1])
