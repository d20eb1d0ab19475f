"""Read a GGUF Llama-family (or Gemma 3) file: hyper-parameters, weights, the
tokenizer rebuilt from the vocabulary (byte-level BPE from its merges, or
SentencePiece from its scores), and the chat template. Everything comes from the file itself, so a larger GGUF Llama model
drops in by path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ...engine.errors import FormatVersionError, InvalidArgumentError, NotFoundError

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "granite", "gemma3")

# Pre-tokenizer regexes by tokenizer.ggml.pre, as llama.cpp's llama-vocab.cpp sets them.
_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_TOKENIZERS: dict[str, tuple[str, bool]] = {
    # name -> (regex, split digits one by one first)
    "default": (_GPT2_REGEX, False),
    "gpt2": (_GPT2_REGEX, False),
    "smollm": (_GPT2_REGEX, True),
    "starcoder": (_GPT2_REGEX, True),
    "refact": (_GPT2_REGEX, True),
    "codeshell": (_GPT2_REGEX, True),
    "llama-bpe": (_LLAMA3_REGEX, False),
    "llama3": (_LLAMA3_REGEX, False),
}
# Token types in tokenizer.ggml.token_type (llama.cpp's llama_token_type).
_CONTROL, _USER_DEFINED = 3, 4
# Chat end tokens llama.cpp also treats as end-of-generation when the file names no EOT.
_END_TOKEN_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>")
_NORMAL = 1
# Gemma's turn format, for Gemma files without a template (the base models): a system message
# goes in front of the first user turn, as Gemma's own template does. No bos_token: the
# tokenizer adds BOS (tokenizer.ggml.add_bos_token).
_GEMMA_TURNS = (
    "{% set ns = namespace(system='') %}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system = message['content'] | trim + '\n\n' %}{% else %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' + ns.system"
    " + message['content'] | trim + '<end_of_turn>\n' }}{% set ns.system = '' %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
_DEFAULT_TEMPLATES = {"gemma3": _GEMMA_TURNS}
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class GGUFModel:
    """Everything read from one GGUF file."""

    path: Path
    architecture: str
    metadata: dict[str, Any]
    tensors: dict[str, Any]  # float32 arrays or QuantizedTensor; (out, in) layout for matrices
    tokenizer: Any  # tokenizers.Tokenizer
    bos_id: int | None
    eos_id: int | None
    end_ids: frozenset[int]
    add_bos: bool
    chat_template: str = field(default=_CHATML)

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        return render_chat_template(self.chat_template, messages, add_generation_prompt, self.token_text(self.bos_id), self.token_text(self.eos_id))

    def token_text(self, token_id: int | None) -> str:
        return "" if token_id is None else (self.tokenizer.id_to_token(token_id) or "")


def read_metadata(reader: Any) -> dict[str, Any]:
    """All key/value fields except the large tokenizer arrays (read separately)."""
    skip = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"}
    return {k: f.contents() for k, f in reader.fields.items() if k not in skip and not k.startswith("GGUF.")}


def build_tokenizer(tokens: list[str], merges: list[str], token_types: Sequence[int], pre: str) -> Any:
    """Byte-level BPE tokenizer (tokenizers library) from GGUF vocabulary and merges.

    Control and user-defined tokens become added tokens, so chat markers such as
    ``<|im_start|>`` in a prompt map to their single ids, as llama.cpp does with
    ``parse_special``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    if pre not in _PRE_TOKENIZERS:
        raise FormatVersionError(f"tokenizer.ggml.pre {pre!r} is not supported; supported: {', '.join(sorted(_PRE_TOKENIZERS))}")
    regex, split_digits = _PRE_TOKENIZERS[pre]
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    steps = [pre_tokenizers.Digits(individual_digits=True)] if split_digits else []
    steps += [
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    special = [
        AddedToken(tokens[i], special=True, normalized=False)
        for i, t in enumerate(token_types)
        if int(t) in (_CONTROL, _USER_DEFINED)
    ]
    tok.add_special_tokens(special)
    return tok


def spm_merges(tokens: Sequence[str], scores: Sequence[float], token_types: Sequence[int]) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's score-driven merging (llama.cpp's SPM tokenizer
    merges the adjacent pair whose joined text is the best-scoring token): every split of a
    normal or user-defined token into two such tokens, ordered by the joined token's score, then
    longer left and right parts first (as transformers' SentencePieceExtractor orders them)."""
    vocab = {t: i for i, t in enumerate(tokens) if int(token_types[i]) in (_NORMAL, _USER_DEFINED)}
    found = []
    for piece, i in vocab.items():
        for k in range(1, len(piece)):
            if piece[:k] in vocab and piece[k:] in vocab:
                found.append((-float(scores[i]), -k, k - len(piece), piece[:k], piece[k:]))
    found.sort()
    return [(left, right) for *_, left, right in found]


def build_spm_tokenizer(tokens: list[str], scores: Sequence[float], token_types: Sequence[int], add_space_prefix: bool,
                        unk_id: int | None) -> Any:
    """SentencePiece-style tokenizer (GGUF ``tokenizer.ggml.model == "llama"``: Gemma, Llama 2) as a
    tokenizers BPE: spaces become U+2581, merges by score (spm_merges), unknown characters fall back
    to ``<0xXX>`` byte tokens; control and user-defined tokens are added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    vocab = {t: i for i, t in enumerate(tokens)}
    unk = tokens[unk_id] if unk_id is not None else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=spm_merges(tokens, scores, token_types), unk_token=unk,
                               fuse_unk=True, byte_fallback=True))
    steps = ([normalizers.Prepend("\u2581")] if add_space_prefix else []) + [normalizers.Replace(" ", "\u2581")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
                                    + ([decoders.Strip(" ", 1, 0)] if add_space_prefix else []))
    # user-defined tokens (Gemma's newline and space runs, HTML tags) are text: matched whole,
    # but kept when decoding skips the control tokens
    tok.add_tokens([AddedToken(tokens[i], special=int(t) == _CONTROL, normalized=False)
                    for i, t in enumerate(token_types) if int(t) in (_CONTROL, _USER_DEFINED)])
    return tok


def render_chat_template(template: str, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool, bos_token: str, eos_token: str) -> str:
    """Render a Hugging Face chat template with jinja2 in a sandbox, as transformers does."""
    try:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:  # jinja2 is in the rag extra
        raise NotFoundError("jinja2 is needed for chat templates: pip install 'shoal[rag]'") from exc
    for m in messages:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InvalidArgumentError("each message must be a dict with string 'role' and 'content'")

    def raise_exception(message: str) -> None:
        raise InvalidArgumentError(f"chat template rejected the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        raise InvalidArgumentError(f"chat template failed: {exc}") from exc


@dataclass(frozen=True)
class QuantizedTensor:
    """A 2-D GGUF tensor kept as stored: ``raw`` holds each row's quantisation blocks."""

    name: str
    qtype: int  # gguf.GGMLQuantizationType value
    raw: np.ndarray  # (rows, bytes per row) uint8
    shape: tuple[int, int]  # (rows, cols) = (out, in) for a matrix

    def dequantize(self) -> np.ndarray:
        """(rows, cols) float32: our dequantiser (kernels/dequant_numpy.py) for the types it has, gguf-py's otherwise."""
        from ..kernels import dequant_numpy

        if self.qtype in dequant_numpy.DEQUANTIZERS:
            return dequant_numpy.dequantize(self.raw, self.qtype, self.shape)
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        return np.ascontiguousarray(dequantize(self.raw, GGMLQuantizationType(self.qtype)), dtype=np.float32).reshape(self.shape)


def iter_tensors(reader: Any) -> Iterator[tuple[str, "np.ndarray | QuantizedTensor"]]:
    """(name, tensor): float32 arrays for float tensors, :class:`QuantizedTensor` for quantised matrices.

    Kernels decide whether to dequantise (``QuantizedTensor.dequantize``, via gguf.quants) or use the blocks.
    """
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    floats = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        if t.tensor_type in floats or len(shape) != 2:
            yield t.name, np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        else:
            yield t.name, QuantizedTensor(t.name, int(t.tensor_type), np.asarray(t.data), (shape[0], shape[1]))


def load_gguf(path: str | Path) -> GGUFModel:
    """Read a GGUF Llama-family model file."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"GGUF file {p} does not exist")
    import gguf

    try:
        reader = gguf.GGUFReader(str(p))
    except (ValueError, OSError) as exc:
        raise FormatVersionError(f"{p} is not a readable GGUF file: {exc}") from exc
    return model_from_reader(reader, p)


def model_from_reader(reader: Any, p: Path) -> GGUFModel:
    """The model in an open gguf.GGUFReader (parsing a file's header is most of a load: ~10 s for
    Gemma's 262k-token vocabulary in gguf-py, so callers that also read fields share one reader)."""
    meta = read_metadata(reader)
    arch = str(meta.get("general.architecture", ""))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise FormatVersionError(f"GGUF architecture {arch!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    model_kind = meta.get("tokenizer.ggml.model")
    if model_kind not in ("gpt2", "llama"):
        raise FormatVersionError(f"tokenizer.ggml.model {model_kind!r} is not supported; byte-level BPE ('gpt2') or SentencePiece ('llama')")
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    types_field = reader.fields.get("tokenizer.ggml.token_type")
    token_types = list(types_field.contents()) if types_field is not None else [1] * len(tokens)
    if model_kind == "gpt2":
        merges = list(reader.fields["tokenizer.ggml.merges"].contents())
        tokenizer = build_tokenizer(tokens, merges, token_types, str(meta.get("tokenizer.ggml.pre", "default")))
    else:
        scores = reader.fields["tokenizer.ggml.scores"].contents()
        unk = meta.get("tokenizer.ggml.unknown_token_id")
        tokenizer = build_spm_tokenizer(tokens, scores, token_types, bool(meta.get("tokenizer.ggml.add_space_prefix", True)),
                                        None if unk is None else int(unk))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    end_ids = {int(i) for i in (eos, meta.get("tokenizer.ggml.eot_token_id"), meta.get("tokenizer.ggml.eom_token_id")) if i is not None}
    by_text = {t: i for i, t in enumerate(tokens) if int(token_types[i]) == _CONTROL}
    end_ids |= {by_text[t] for t in _END_TOKEN_TEXTS if t in by_text}
    return GGUFModel(
        path=p,
        architecture=arch,
        metadata=meta,
        tensors=dict(iter_tensors(reader)),
        tokenizer=tokenizer,
        bos_id=None if bos is None else int(bos),
        eos_id=None if eos is None else int(eos),
        end_ids=frozenset(end_ids),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        chat_template=str(meta.get("tokenizer.chat_template") or _DEFAULT_TEMPLATES.get(arch, _CHATML)),
    )
