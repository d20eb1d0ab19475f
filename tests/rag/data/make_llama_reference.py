"""Regenerate a llama.cpp reference file: llama.cpp's tokenization and greedy
tokens for one GGUF model, which our Llama must reproduce.
smollm2_llamacpp_reference.json (SmolLM2-135M-Instruct Q4_1) and
gemma3_llamacpp_reference.json (Gemma 3 270M Q4_K_M) are made by it.

Run with llama-cpp-python importable, never as a project dependency, e.g. a
throwaway venv (python -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install
llama-cpp-python jinja2), or its source tree on PYTHONPATH with
LLAMA_CPP_LIB_PATH at a libllama built from it:
    python tests/rag/data/make_llama_reference.py <path to .gguf> <output name>.json
Chat prompts are templated with the GGUF's own template (jinja2, same options
as transformers), or Gemma's turn markers for a file without one (Gemma 3's
base model), tokenized by llama.cpp with special-token parsing and the BOS the
file asks for, then decoded greedily (argmax of llama.cpp's logits, one token
at a time). For the first steps the top logits are kept too: numerics="llama.cpp"
must reproduce them bit for bit (they are float32 values, exact in JSON).
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
    "<start_of_turn>user\nhi<end_of_turn>",
    "don't won't I'll we've",
]
GEMMA_TURN = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"
MAX_NEW = 40
TOP_STEPS, TOP_K = 3, 8


def chat_prompt(template: str | None, content: str) -> str:
    if template is None:
        return GEMMA_TURN.format(content)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=[{"role": "user", "content": content}], add_generation_prompt=True)


def main(path: str, name: str) -> None:
    llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    template = llm.metadata.get("tokenizer.chat_template")
    prompts = [chat_prompt(template, c) for c in CHATS] + RAW
    eos = {llm.token_eos(), 0, 2}
    if template is None:  # Gemma's turns end with <end_of_turn>
        eos |= set(llm.tokenize(b"<end_of_turn>", add_bos=False, special=True))
    cases = []
    for prompt, chat in zip(prompts, CHATS + [None] * len(RAW)):
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)  # BOS only where the file asks
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
    dest = Path(__file__).with_name(name)
    meta = {"model": Path(path).name, "llama_cpp_python": llama_cpp.__version__, "max_new_tokens": MAX_NEW}
    dest.write_text(json.dumps({**meta, "cases": cases, "tokenize": tokenized}, indent=1, ensure_ascii=False))
    print("wrote", dest)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
