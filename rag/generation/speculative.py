"""Speculative decoding: drafters propose tokens, the model checks them all in
one forward pass, and the acceptance rule keeps the output what plain decoding
would give.

Drafters:

- :class:`PromptLookupDrafter` (``SamplingParams(draft="prompt_lookup")``):
  finds the latest earlier occurrence of the context's last n-gram (n from
  ``max_ngram`` down to ``min_ngram``) and proposes the tokens that followed it. RAG
  answers quote their sources, so the prompt is a good predictor of the answer
  and costs nothing to consult (Saxena's prompt lookup decoding, as in
  transformers' ``prompt_lookup_num_tokens`` and vLLM's n-gram speculator).
- :class:`ModelDrafter` (``load_generator(path, draft_model=PATH)`` and
  ``SamplingParams(draft="model")``): a smaller model with the same tokenizer
  decodes the draft greedily on its own paged KV cache, kept in step with the
  accepted tokens and rolled back past rejected ones.

Acceptance (:func:`accept`): with greedy decoding a draft token is kept while
it equals the model's argmax, and the first disagreement is replaced by the
argmax, so the tokens are exactly plain greedy's. With sampling, the rule of
Leviathan et al. / Chen et al. (2023): keep draft token x with probability
min(1, p(x) / q(x)), on rejection draw from normalise(max(p - q, 0)); the
emitted tokens are then distributed as the target model's. A prompt-lookup
draft is deterministic (q is one-hot), and so is the model drafter's greedy
draft.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol, Sequence

import numpy as np

from ..models.kv_cache import SequenceCache
from ..models.ops import to_numpy
from .sampling import apply_repetition_penalty, sampling_distribution
from .types import SamplingParams

DRAFTERS = ("prompt_lookup", "model")


class Drafter(Protocol):
    """Proposes up to ``n`` next tokens for a request's context (prompt + generated)."""

    def propose(self, key: int, context: Sequence[int], n: int) -> list[int]: ...

    def release(self, key: int) -> None: ...


class PromptLookupDrafter:
    """n-gram lookup in the request's own context; stateless, O(context) per step in numpy."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2) -> None:
        """``min_ngram`` 2: a one-token match (a comma, "the") predicted so little in RAG answers
        that verifying its drafts cost more than they saved (17% acceptance with unigrams)."""
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def propose(self, key: int, context: Sequence[int], n: int) -> list[int]:
        ctx = np.asarray(context, dtype=np.int64)
        size = len(ctx)
        for g in range(min(self.max_ngram, size - 1), self.min_ngram - 1, -1):
            tail = ctx[size - g :]
            # candidate starts i < size - g with ctx[i:i+g] == tail, latest first
            windows = np.lib.stride_tricks.sliding_window_view(ctx[: size - 1], g)
            hits = np.flatnonzero((windows == tail).all(axis=1))
            hits = hits[hits + g < size]
            if hits.size:
                start = int(hits[-1]) + g
                return ctx[start : start + n].tolist()
        return []

    def release(self, key: int) -> None:
        return None


class ModelDrafter:
    """Greedy drafts from a second (small) model with the same vocabulary.

    Each request keeps a sequence in the drafter's own KV cache holding the
    accepted context; a proposal first feeds what the drafter has not seen,
    then decodes ``n`` tokens one by one, and the next proposal truncates the
    rejected ones. Called from the engine's scheduler thread only.
    """

    def __init__(self, model: Any, cache_tokens: int = 8192, block_size: int = 16) -> None:
        self.model = model
        self.cache = model.new_cache(-(-cache_tokens // block_size), block_size)
        self._seqs: dict[int, tuple[SequenceCache, list[int]]] = {}
        self._lock = threading.Lock()

    def propose(self, key: int, context: Sequence[int], n: int) -> list[int]:
        with self._lock:
            seq, seen = self._seqs.get(key) or (SequenceCache(self.cache), [])
            self._seqs[key] = (seq, seen)
            common = 0  # longest prefix of the context the drafter's cache already holds
            limit = min(len(seen), len(context) - 1)
            while common < limit and seen[common] == context[common]:
                common += 1
            seq.truncate(common)
            del seen[common:]
            room = min(n, self.model.config.context_length - len(context))
            if room <= 0:
                return []
            feed = list(context[common:])
            seq.reserve(len(feed) + room)
            draft: list[int] = []
            for _ in range(room):
                logits = to_numpy(self.model.forward([(seq, feed)])[0])[-1]
                seen.extend(feed)
                tok = int(np.argmax(logits))
                draft.append(tok)
                feed = [tok]
            return draft

    def release(self, key: int) -> None:
        with self._lock:
            entry = self._seqs.pop(key, None)
        if entry is not None:
            entry[0].free()


def accept(
    logits: np.ndarray, draft: Sequence[int], params: SamplingParams, seen: list[int], rng: np.random.Generator
) -> list[int]:
    """Tokens to emit after verifying ``draft``: the accepted prefix plus one token from the model.

    ``logits`` (len(draft) + 1, V): row i scores the token after the context
    and draft[:i]. ``seen`` (prompt + generated) feeds the repetition penalty
    and is not modified.
    """
    out: list[int] = []
    history = list(seen)
    for i in range(len(draft) + 1):
        row = apply_repetition_penalty(np.asarray(logits[i], dtype=np.float32), history, params.repetition_penalty)
        if params.temperature == 0:
            tok = int(np.argmax(row))
            out.append(tok)
            if i == len(draft) or tok != draft[i]:
                return out
        else:
            p = sampling_distribution(row, params.temperature, params.top_k, params.top_p)
            if i == len(draft):
                out.append(int(rng.choice(p.shape[-1], p=p)))
                return out
            x = int(draft[i])
            if rng.random() < p[x]:  # q(x) = 1 for a deterministic draft: accept with p(x)
                out.append(x)
            else:
                residual = p.copy()
                residual[x] = 0.0  # max(p - q, 0) with q one-hot at x
                out.append(int(rng.choice(residual.shape[-1], p=residual / residual.sum())))
                return out
        history.append(out[-1])
    return out
