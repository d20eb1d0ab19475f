"""Text -> terms for the full-text (BM25) index: lower-casing, Unicode word splitting,
optional stop words and Snowball stemming.

Words are runs of Unicode word characters (``\\w+`` with ``re.UNICODE``: letters,
digits and ``_`` of every script), case-folded with ``str.casefold``. Stemming uses
PyStemmer (the C Snowball stemmers, ~1M words/s, a well-kept library) when a
language is chosen; the stop words are bm25s's English list, so a comparison with
bm25s tokenises identically. Documents and queries go through the same tokenizer,
so a collection's settings are part of its config and persisted with it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..engine.errors import InvalidArgumentError

_WORD = re.compile(r"\w+", re.UNICODE)

#: English stop words (the list bm25s and scikit-learn ship; 179 words).
ENGLISH_STOPWORDS = frozenset("""
a about above after again against ain all am an and any are aren aren't as at be because been before being below
between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down during each few
for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers herself him himself his
how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more most mustn mustn't my myself
needn needn't no nor not now o of off on once only or other our ours ourselves out over own re s same shan shan't she
she's should should've shouldn shouldn't so some such t than that that'll the their theirs them themselves then there
these they this those through to too under until up ve very was wasn wasn't we were weren weren't what when where
which while who whom why will with won won't wouldn wouldn't y you you'd you'll you're you've your yours yourself
yourselves
""".split())
STOPWORD_LISTS = {"english": ENGLISH_STOPWORDS}


@dataclass(frozen=True)
class TokenizerConfig:
    """How a text field is tokenised (``text_options={...}`` at create time)."""

    #: Snowball language for stemming (``"english"``, ``"french"``, ...), or None for no stemming.
    stemmer: str | None = None
    #: Stop-word list to drop (``"english"``), or None to keep every word.
    stopwords: str | None = None
    #: Words shorter than this many characters are dropped.
    min_length: int = 1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "TokenizerConfig":
        out = cls(**{k: options[k] for k in cls.__dataclass_fields__ if k in options})
        if out.stemmer is not None:
            if not isinstance(out.stemmer, str):
                raise InvalidArgumentError(f"text option stemmer must be a language name or None, got {out.stemmer!r}")
            langs = _stemmer_languages()
            if out.stemmer not in langs:
                raise InvalidArgumentError(f"unknown stemmer language {out.stemmer!r}; choose from {sorted(langs)}")
        if out.stopwords is not None and out.stopwords not in STOPWORD_LISTS:
            raise InvalidArgumentError(f"unknown stop-word list {out.stopwords!r}; choose from {sorted(STOPWORD_LISTS)}")
        if isinstance(out.min_length, bool) or not isinstance(out.min_length, int) or out.min_length < 1:
            raise InvalidArgumentError(f"text option min_length must be a positive integer, got {out.min_length!r}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stemmer_languages() -> set[str]:
    try:
        import Stemmer
    except ImportError:
        raise InvalidArgumentError("stemming needs PyStemmer: pip install 'shoal[text]'") from None
    return set(Stemmer.algorithms())


class Tokenizer:
    """Turns text into the list of terms the index stores (repeats kept: they are term frequencies)."""

    def __init__(self, config: TokenizerConfig = TokenizerConfig()) -> None:
        self.config = config
        self._stop = STOPWORD_LISTS.get(config.stopwords or "", frozenset())
        self._stem = None
        if config.stemmer is not None:
            import Stemmer

            self._stem = Stemmer.Stemmer(config.stemmer).stemWords

    def __call__(self, text: str) -> list[str]:
        words = _WORD.findall(text.casefold())
        if self._stop or self.config.min_length > 1:
            words = [w for w in words if len(w) >= self.config.min_length and w not in self._stop]
        return self._stem(words) if self._stem is not None and words else words
