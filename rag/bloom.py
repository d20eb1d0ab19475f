"""A model-free text embedder: character 3-grams hashed into a Bloom-style bit vector.

For users with no model at all. Each n-gram of the normalised text sets ``k``
bits of an ``m``-bit vector, the bit positions taken from the n-gram's SHA-256
digest (so embeddings are identical across processes and machines). Texts that
share many n-grams share many bits: the Jaccard index of the bit sets and the
cosine of the unit-normalised bit vectors both grow with lexical overlap.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..engine.errors import InvalidArgumentError
from .embedders import register_embedder

__all__ = ["BloomEmbedder", "jaccard"]

_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1 << 16)
def _digest(gram: str) -> bytes:
    return hashlib.sha256(gram.encode("utf-8")).digest()


class BloomEmbedder:
    """Character n-grams (default n=3) hashed into an m-bit vector with k hash positions each."""

    def __init__(self, m: int = 2048, k: int = 4, n: int = 3, lowercase: bool = True) -> None:
        if not 8 <= m <= 1 << 20:
            raise InvalidArgumentError(f"m (bits) must be in [8, 1048576], got {m}")
        if not 1 <= k <= 8:
            raise InvalidArgumentError(f"k (hash positions per n-gram) must be in [1, 8] (one SHA-256 digest), got {k}")
        if n < 1:
            raise InvalidArgumentError(f"n (n-gram length) must be >= 1, got {n}")
        self.m, self.k, self.n, self.lowercase = m, k, n, lowercase
        self.dim = m
        self.name = f"bloom-m{m}-k{k}-n{n}"

    def grams(self, text: str) -> set[str]:
        """The distinct character n-grams of the normalised text, padded with one space each side."""
        norm = _SPACES.sub(" ", text.lower() if self.lowercase else text).strip()
        if not norm:
            return set()
        padded = f" {norm} "
        return {padded[i : i + self.n] for i in range(max(1, len(padded) - self.n + 1))}

    def positions(self, gram: str) -> list[int]:
        """The k bit positions of one n-gram: consecutive 32-bit words of its digest, modulo m."""
        d = _digest(gram)
        return [int.from_bytes(d[4 * j : 4 * j + 4], "little") % self.m for j in range(self.k)]

    def bits(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), m) boolean Bloom vectors."""
        if isinstance(texts, str):
            raise InvalidArgumentError("bits/encode take a sequence of strings, not a single string")
        out = np.zeros((len(texts), self.m), dtype=bool)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidArgumentError(f"texts[{row}] must be a string, got {type(text).__name__}")
            cols = [p for g in self.grams(text) for p in self.positions(g)]
            out[row, cols] = True
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-normalised float32 bit vectors (an empty text stays the zero vector)."""
        b = self.bits(texts).astype(np.float32)
        norms = np.sqrt(b.sum(axis=1, keepdims=True))
        return np.divide(b, norms, out=np.zeros_like(b), where=norms > 0)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index |a & b| / |a | b| of two Bloom bit vectors (bool or 0/1); 1.0 for two empty sets."""
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


register_embedder("bloom", BloomEmbedder)
