"""Picking a Shoal embedder for the framework adapters (``ShoalEmbeddings``, ``ShoalEmbedding``).

The adapters themselves live in the framework modules, because each subclasses its framework's
base class; what they share is how an embedder is named or passed.
"""
from __future__ import annotations

from typing import Any

from ..engine.errors import InvalidArgumentError

__all__ = ["resolve_embedder"]


def resolve_embedder(embedder: Any = "minilm", **options: Any) -> Any:
    """An embedder by registry name (``"minilm"``, ``"bloom"``; ``options`` go to its constructor),
    or an object with ``name``, ``dim`` and ``encode(texts, batch_size)`` (``shoal.rag.Embedder``) as is."""
    if isinstance(embedder, str):
        from .. import rag  # importing shoal.rag registers minilm and bloom

        return rag.load_embedder(embedder, **options)
    if options:
        raise InvalidArgumentError(f"options {sorted(options)} are for an embedder given by name; "
                                   "pass them to the embedder's constructor instead")
    from ..rag.embedders import Embedder

    if not isinstance(embedder, Embedder):
        raise InvalidArgumentError(f"embedder must be a registered name (e.g. 'minilm', 'bloom') or an object with "
                                   f"name, dim and encode(texts, batch_size); got {type(embedder).__name__}")
    return embedder
