"""Sentence-aware word-window chunking.

Chunks hold whole sentences up to ``chunk_words`` words; consecutive chunks
share about ``overlap_words`` words (whole trailing sentences when they fit,
else the last words), so a fact cut at a boundary is still retrievable in one
piece. A sentence longer than a chunk is split into word windows. Blank lines
and Markdown headings always end a sentence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.errors import InvalidArgumentError

__all__ = ["Chunk", "split_sentences", "chunk_text"]

# End of sentence: terminal punctuation (optionally closing quotes/brackets) then whitespace;
# or a paragraph break; or the line before a Markdown heading / list item.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)|\n\s*\n|\n(?=\s*(?:#{1,6}\s|[-*+]\s|\d+[.)]\s))")
_HEADING = re.compile(r"(?m)^(\s*#{1,6}\s.*)$")
# Abbreviations that end with a period without ending the sentence.
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|Mr|Mrs|Ms|Dr|Prof|St|No|Fig|al)\.|\b[A-Z]\.)$")


@dataclass(frozen=True)
class Chunk:
    """One chunk: its position in the document, its text and its word span [start, end)."""

    index: int
    text: str
    start_word: int
    end_word: int

    @property
    def n_words(self) -> int:
        return self.end_word - self.start_word


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (whitespace-normalised, empty pieces dropped)."""
    text = _HEADING.sub(r"\1\n", text)  # a heading line is a sentence of its own
    pieces: list[str] = []
    pending = ""
    start = 0
    for m in _BOUNDARY.finditer(text):
        piece = pending + text[start : m.start()] + m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip("\"')]"))]
        start = m.end()
        if "\n" not in m.group(0) and _ABBREV.search(piece.rstrip()):
            pending = piece + " "
            continue
        pending = ""
        pieces.append(piece)
    pieces.append(pending + text[start:])
    return [" ".join(p.split()) for p in pieces if p.strip()]


def chunk_text(text: str, chunk_words: int = 100, overlap_words: int = 20) -> list[Chunk]:
    """Split ``text`` into overlapping chunks of at most ``chunk_words`` words."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"text must be a string, got {type(text).__name__}")
    if chunk_words < 1:
        raise InvalidArgumentError(f"chunk_words must be >= 1, got {chunk_words}")
    if not 0 <= overlap_words < chunk_words:
        raise InvalidArgumentError(f"overlap_words must be in [0, chunk_words), got {overlap_words} with chunk_words={chunk_words}")
    # Sentences as word spans over the flat word list; long sentences split into windows.
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    for sentence in split_sentences(text):
        w = sentence.split()
        base = len(words)
        words.extend(w)
        for s in range(0, len(w), chunk_words):
            spans.append((base + s, base + min(s + chunk_words, len(w))))
    chunks: list[Chunk] = []
    i = 0  # first sentence span not yet fully covered
    start = 0  # first word of the next chunk (may reach back into covered text for overlap)
    while i < len(spans):
        end = spans[i][1]
        j = i + 1
        while j < len(spans) and spans[j][1] - start <= chunk_words:
            end = spans[j][1]
            j += 1
        start = max(start, end - chunk_words)  # a long next sentence shortens the overlap
        chunks.append(Chunk(len(chunks), " ".join(words[start:end]), start, end))
        i = j
        if i == len(spans):
            break
        start = _overlap_start(spans[:i], end, overlap_words)
    return chunks


def _overlap_start(spans: list[tuple[int, int]], end: int, overlap_words: int) -> int:
    """Start of the overlap before ``end``: whole trailing sentences within budget, else the last words."""
    if overlap_words == 0:
        return end
    start = end
    for s, _ in reversed(spans):
        if end - s > overlap_words:
            break
        start = s
    return start if start < end else end - overlap_words
