"""Beam search over the paged KV cache, beams sharing pages copy-on-write.

Each step feeds every live beam's last token in one batched forward pass,
scores all continuations by summed log-probability, and keeps the ``num_beams``
best. A kept continuation forks its parent's page table
(``SequenceCache.fork``): the prompt's and the common prefix's blocks are
stored once however many beams descend from them, and only the partly filled
last block is copied when a beam writes into it (vLLM's block sharing).

Finished hypotheses (an end token, or the token budget) are ranked by
``sum logprob / generated_length ** length_penalty``. ``early_stopping=True``
stops once ``num_beams`` hypotheses are finished; ``False`` continues while a
live beam could still beat the worst of them (transformers' heuristic: its
current normalised score). The best hypothesis is returned (and streamed by
the engine) at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..models.kv_cache import PagedKVCache, SequenceCache
from ..models.llama import LlamaModel
from ..models.ops import to_numpy


@dataclass
class Hypothesis:
    tokens: list[int]
    logprob: float
    finished_by_end: bool

    def score(self, length_penalty: float) -> float:
        return self.logprob / max(len(self.tokens), 1) ** length_penalty


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def beam_search(
    model: LlamaModel,
    cache: PagedKVCache,
    prompt: Sequence[int],
    num_beams: int,
    max_new_tokens: int,
    end_ids: frozenset[int],
    length_penalty: float = 1.0,
    early_stopping: bool = True,
) -> Hypothesis:
    """The best hypothesis for ``prompt`` (its tokens include the end token if it ended with one)."""
    ctx = model.config.context_length
    max_new_tokens = min(max_new_tokens, ctx - len(prompt))
    root = SequenceCache(cache)
    live: list[tuple[SequenceCache, list[int], float]] = []
    finished: list[Hypothesis] = []
    try:
        root.reserve(len(prompt))
        logits = to_numpy(model.forward([(root, list(prompt))])[0])
        step_logp = log_softmax(logits)  # (1, V): the first step has one parent
        parents = [(root, [], 0.0)]
        for step in range(max_new_tokens):
            vocab = step_logp.shape[1]
            totals = np.array([p[2] for p in parents])[:, None] + step_logp  # (parents, V)
            flat = np.argsort(-totals, axis=None, kind="stable")[: 2 * num_beams]
            live = []
            for idx in flat:
                pi, tok = divmod(int(idx), vocab)
                seq, toks, _ = parents[pi]
                total = float(totals[pi, tok])
                if tok in end_ids:
                    if len(finished) < num_beams or Hypothesis(toks + [tok], total, True).score(length_penalty) > min(
                        h.score(length_penalty) for h in finished
                    ):
                        finished.append(Hypothesis(toks + [tok], total, True))
                    continue
                if len(live) < num_beams:
                    live.append((seq.fork(), toks + [tok], total))
            for seq, _, _ in parents:
                seq.free()
            parents = []
            finished = sorted(finished, key=lambda h: -h.score(length_penalty))[:num_beams]
            if step == max_new_tokens - 1:  # out of budget: live beams compete as they are
                finished += [Hypothesis(toks, total, False) for _, toks, total in live]
                break
            if not live or _done(finished, live, num_beams, length_penalty, early_stopping):
                break
            for seq, toks, _ in live:
                seq.reserve(1)
            out = model.forward([(seq, toks[-1:]) for seq, toks, _ in live])
            step_logp = log_softmax(to_numpy(model.xp.concatenate(out, axis=0)))
            parents, live = live, []
        return max(finished, key=lambda h: h.score(length_penalty))
    finally:
        for seq, _, _ in live + parents:
            seq.free()
        root.free()


def _done(finished: list[Hypothesis], live: list[tuple[SequenceCache, list[int], float]], num_beams: int,
          length_penalty: float, early_stopping: bool) -> bool:
    if len(finished) < num_beams:
        return False
    if early_stopping:
        return True
    worst = min(h.score(length_penalty) for h in finished)
    best_live = max(total / len(toks) ** length_penalty for _, toks, total in live)
    return best_live <= worst
