"""Token sampling on the host: repetition penalty, temperature, top-k, top-p.

Logits of one request arrive as a float32 numpy vector; the masks are exact
(top-k keeps exactly k tokens, ties to the lower id; top-p keeps the smallest
prefix of the probability-sorted tokens whose mass reaches p), and a seeded
``numpy.random.Generator`` makes sampling reproducible per request.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ...engine.errors import InvalidArgumentError


def apply_repetition_penalty(logits: np.ndarray, seen: Iterable[int], penalty: float) -> np.ndarray:
    """CTRL-style penalty (as transformers / llama.cpp): divide positive logits of seen tokens, multiply negative ones."""
    if penalty == 1.0:
        return logits
    ids = np.fromiter(set(seen), dtype=np.int64)
    if ids.size == 0:
        return logits
    out = logits.copy()
    vals = out[ids]
    out[ids] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def top_k_mask(logits: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k highest logits (all when k <= 0 or k >= vocab); ties go to the lower id."""
    n = logits.shape[-1]
    if k <= 0 or k >= n:
        return np.ones(n, dtype=bool)
    order = np.argsort(-logits, kind="stable")[:k]
    mask = np.zeros(n, dtype=bool)
    mask[order] = True
    return mask


def top_p_mask(probs: np.ndarray, p: float) -> np.ndarray:
    """Boolean mask of the smallest set of most probable tokens whose total probability is >= p."""
    n = probs.shape[-1]
    if p >= 1.0:
        return probs > 0 if np.any(probs > 0) else np.ones(n, dtype=bool)
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    before = np.concatenate([[0.0], mass[:-1]])  # mass strictly before each token
    keep = order[before < p]
    mask = np.zeros(n, dtype=bool)
    mask[keep if keep.size else order[:1]] = True
    return mask


def sampling_distribution(logits: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """Probabilities (float64, sums to 1) after temperature, top-k then top-p."""
    if temperature <= 0:
        raise InvalidArgumentError("temperature must be > 0 for a sampling distribution (0 means greedy)")
    z = logits.astype(np.float64) / temperature
    z = np.where(top_k_mask(logits, top_k), z, -np.inf)
    z -= z.max()
    probs = np.exp(z)
    probs /= probs.sum()
    probs = np.where(top_p_mask(probs, top_p), probs, 0.0)
    return probs / probs.sum()


def sample_token(logits: np.ndarray, seen: Iterable[int], temperature: float, top_k: int, top_p: float,
                 repetition_penalty: float, rng: np.random.Generator) -> int:
    """One token id: greedy (argmax, lowest id on ties) when temperature == 0, else a draw from the distribution."""
    logits = apply_repetition_penalty(np.asarray(logits, dtype=np.float32), seen, repetition_penalty)
    if temperature == 0:
        return int(np.argmax(logits))
    probs = sampling_distribution(logits, temperature, top_k, top_p)
    return int(rng.choice(probs.shape[-1], p=probs))
