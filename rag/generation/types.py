"""Plain data types of the generation API."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...engine.errors import InvalidArgumentError

FINISH_REASONS = ("stop", "length", "stop_string")


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop. ``temperature=0`` is greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Speculative decoding (speculative.py): None, "prompt_lookup", or "model" (needs
    # load_generator(..., draft_model=PATH)); up to num_draft_tokens are verified per step.
    draft: str | None = None
    num_draft_tokens: int = 5
    # Beam search (beam.py) when num_beams > 1: deterministic, so temperature must be 0.
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = True

    def validate(self) -> "SamplingParams":
        """Raise InvalidArgumentError on out-of-range values; returns self for chaining."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidArgumentError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise InvalidArgumentError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidArgumentError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidArgumentError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not self.repetition_penalty > 0:
            raise InvalidArgumentError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")
        if isinstance(self.stop, str):
            raise InvalidArgumentError("stop must be a tuple of strings, not a single string")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidArgumentError("stop strings must be non-empty strings")
        if self.draft is not None and self.draft not in ("prompt_lookup", "model"):
            raise InvalidArgumentError(f"draft must be None, 'prompt_lookup' or 'model', got {self.draft!r}")
        if not isinstance(self.num_draft_tokens, int) or not 1 <= self.num_draft_tokens <= 16:
            raise InvalidArgumentError(f"num_draft_tokens must be an integer in [1, 16], got {self.num_draft_tokens!r}")
        if not isinstance(self.num_beams, int) or not 1 <= self.num_beams <= 64:
            raise InvalidArgumentError(f"num_beams must be an integer in [1, 64], got {self.num_beams!r}")
        if self.num_beams > 1 and (self.temperature != 0 or self.draft is not None):
            raise InvalidArgumentError("beam search (num_beams > 1) is deterministic: use temperature=0 and no draft")
        if not isinstance(self.length_penalty, (int, float)) or self.length_penalty != self.length_penalty:
            raise InvalidArgumentError(f"length_penalty must be a number, got {self.length_penalty!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise InvalidArgumentError(f"seed must be an integer or None, got {self.seed!r}")
        return self


@dataclass
class TokenEvent:
    """One generated token and the text it released (may be empty while a
    multi-byte character or a possible stop string is incomplete)."""

    token_id: int
    text: str


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # one of FINISH_REASONS
    prompt_tokens: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    timings: dict[str, float] = field(default_factory=dict)
    draft_tokens: int = 0  # speculative decoding: tokens drafted, and how many the model accepted
    accepted_tokens: int = 0
