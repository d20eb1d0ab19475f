"""Retrieval-augmented answering over a Shoal collection: ingest documents, ask with citations.

The pipeline only uses the Collection API (upsert / get / delete / count /
search), so it works the same on an embedded ``shoal.Database`` collection and
on a remote one from ``shoal.Client``. Every chunk is one record
``"<source>#<chunk>"`` whose metadata holds the document's metadata plus
``source``, ``chunk``, ``text``, ``n_chunks`` and ``embedder``.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ..engine.errors import DimensionMismatchError, InvalidArgumentError
from ..engine.validation import check_k
from .cache import SemanticCache
from .chunking import chunk_text
from .embedders import Embedder
from .pii import scrub_pii

__all__ = ["Document", "Citation", "Answer", "IngestReport", "RagPipeline", "load_documents", "mmr",
           "build_messages", "SYSTEM_PROMPT", "UNKNOWN_ANSWER", "TEXT_SUFFIXES"]

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".text")
UNKNOWN_ANSWER = "I don't know: the ingested sources do not contain the answer."
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that you do not know. Do not use outside knowledge."
)
_MARKER = re.compile(r"\[(\d+)\]")


class _Collection(Protocol):
    def upsert(self, ids: Any, vectors: Any, metadata: Any = None) -> int: ...
    def delete(self, ids: Any = None, filter: Any = None) -> int: ...
    def count(self, filter: Any = None) -> int: ...
    def search(self, queries: Any, k: int = 10, filter: Any = None, params: Any = None, include: Any = ...) -> Any: ...


@dataclass
class Document:
    """A text to ingest; ``source`` identifies it (re-ingesting the same source replaces its chunks)."""

    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Citation:
    number: int  # the [n] of the source in the prompt
    source: str
    chunk: int
    score: float
    text: str
    title: str | None = None


@dataclass
class Answer:
    """What ``ask`` returns: the answer, the retrieved sources it may cite, and where time went."""

    question: str
    text: str
    citations: list[Citation]
    timings: dict[str, float]
    cached: bool = False
    finish_reason: str = "stop"

    @property
    def cited(self) -> list[Citation]:
        """The citations the answer text refers to with [n] markers (all of them when it uses none)."""
        used = {int(m) for m in _MARKER.findall(self.text)}
        return [c for c in self.citations if c.number in used] or list(self.citations)

    def format(self) -> str:
        lines = [self.text.strip(), ""]
        for c in self.cited:
            title = f" {c.title!r}" if c.title else ""
            lines.append(f"[{c.number}] {c.source}{title} chunk {c.chunk} (score {c.score:.3f})")
        return "\n".join(lines).strip()


@dataclass
class IngestReport:
    documents: int = 0
    chunks: int = 0
    removed: int = 0
    emails_scrubbed: int = 0
    phones_scrubbed: int = 0
    seconds: float = 0.0


def load_documents(paths: Iterable[str | Path], metadata: Mapping[str, Any] | None = None) -> list[Document]:
    """Text/Markdown files (directories are walked) as Documents with source, title and date metadata."""
    docs: list[Document] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        elif path.is_file():
            files = [path]
        else:
            raise InvalidArgumentError(f"{path} is neither a file nor a directory")
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            heading = re.search(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", text) if f.suffix.lower() in (".md", ".markdown") else None
            meta: dict[str, Any] = {"title": heading.group(1) if heading else f.stem,
                                    "date": time.strftime("%Y-%m-%d", time.gmtime(f.stat().st_mtime)),
                                    "format": "markdown" if heading or f.suffix.lower() in (".md", ".markdown") else "text"}
            meta.update(metadata or {})
            docs.append(Document(text, str(f), meta))
    return docs


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lambda_: float = 0.5) -> list[int]:
    """Maximal marginal relevance: greedily pick rows relevant to ``query`` yet unlike those already picked.

    Vectors are unit-normalised; ``lambda_`` = 1 is pure relevance, 0 pure diversity.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise InvalidArgumentError(f"mmr lambda must be in [0, 1], got {lambda_}")
    relevance = candidates @ query
    sim = candidates @ candidates.T
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)
    for _ in range(min(k, len(candidates))):
        score = lambda_ * relevance - (1.0 - lambda_) * (redundancy if chosen else 0.0)
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        redundancy = np.maximum(redundancy, sim[best])
    return chosen


def build_messages(question: str, citations: Sequence[Citation]) -> list[dict[str, str]]:
    """The chat: instructions, numbered sources, then the question."""
    sources = "\n\n".join(f"[{c.number}] ({c.source}{', ' + c.title if c.title else ''}) {c.text}" for c in citations)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}\nAnswer using only the sources."}]


class RagPipeline:
    """Ingest documents into a collection and answer questions from them with a generator.

    ``generator`` is anything with ``stream(messages, params)`` yielding token
    events (``.text``); ``sampling`` is passed through unchanged.
    """

    def __init__(self, collection: _Collection, embedder: Embedder, generator: Any = None, *,
                 chunk_words: int = 100, overlap_words: int = 20, scrub: bool = False,
                 cache: SemanticCache["Answer"] | None = None, sampling: Any = None,
                 retrieval: str = "auto") -> None:
        dim = getattr(collection, "dim", embedder.dim)
        if dim != embedder.dim:
            raise DimensionMismatchError(f"collection has dim {dim} but embedder {embedder.name!r} gives {embedder.dim}; "
                                         "use the embedder the collection was ingested with")
        chunk_text("", chunk_words, overlap_words)  # validate the sizes now
        self.collection, self.embedder, self.generator = collection, embedder, generator
        self.chunk_words, self.overlap_words, self.scrub = chunk_words, overlap_words, scrub
        self.cache, self.sampling = cache, sampling
        self.hybrid = hybrid_retrieval(collection, retrieval)

    # ---------------------------------------------------------------- ingest
    def ingest(self, documents: Iterable[Document | str], metadata: Mapping[str, Any] | None = None) -> IngestReport:
        """Chunk, scrub, embed and upsert; a source already present has its chunks replaced."""
        t0 = time.perf_counter()
        report = IngestReport()
        docs = [d if isinstance(d, Document) else Document(d, _text_source(d)) for d in documents]
        for doc in docs:  # validate everything before writing anything
            if not isinstance(doc.text, str) or not isinstance(doc.source, str) or not doc.source:
                raise InvalidArgumentError(f"a document needs str text and a non-empty str source, got source={doc.source!r}")
        for doc in docs:
            text = doc.text
            if self.scrub:
                s = scrub_pii(text)
                text = s.text
                report.emails_scrubbed += s.emails
                report.phones_scrubbed += s.phones
            chunks = chunk_text(text, self.chunk_words, self.overlap_words)
            meta = {**(metadata or {}), **doc.metadata}
            if chunks:
                vectors = self.embedder.encode([c.text for c in chunks])
                payloads = [{**meta, "source": doc.source, "chunk": c.index, "n_chunks": len(chunks), "text": c.text,
                             "embedder": self.embedder.name} for c in chunks]
                self.collection.upsert([f"{doc.source}#{c.index}" for c in chunks], vectors, payloads)
            # Upsert first, then drop the chunks past the new end: the source is never missing meanwhile.
            report.removed += self.collection.delete(filter={"source": doc.source, "chunk": {"$gte": len(chunks)}})
            report.documents += 1
            report.chunks += len(chunks)
        if self.cache is not None:
            self.cache.invalidate_sources(d.source for d in docs)
        report.seconds = time.perf_counter() - t0
        return report

    def delete_source(self, source: str) -> int:
        """Remove every chunk of ``source``; returns how many."""
        removed = self.collection.delete(filter={"source": source})
        if self.cache is not None:
            self.cache.invalidate_sources([source])
        return removed

    # -------------------------------------------------------------- retrieve
    def retrieve(self, question: str, k: int = 4, *, filter: Any = None, min_score: float = 0.0,
                 use_mmr: bool = False, fetch_k: int | None = None, mmr_lambda: float = 0.5,
                 query_vector: np.ndarray | None = None, timings: dict[str, float] | None = None) -> list[Citation]:
        """The best chunks for ``question`` above ``min_score`` (cosine), optionally re-ranked by MMR."""
        timings = {} if timings is None else timings
        k = check_k(k)  # a str or None is a clear error too, not a TypeError
        t = time.perf_counter()
        q = self.embedder.encode([question])[0] if query_vector is None else query_vector
        timings["embed_ms"] = timings.get("embed_ms", 0.0) + 1e3 * (time.perf_counter() - t)
        t = time.perf_counter()
        n = max(fetch_k or 4 * k, k) if use_mmr else k
        include = ("metadata", "distance", "vector") if use_mmr else ("metadata", "distance")
        if self.hybrid:
            res = self.collection.search(q, k=n, filter=filter, include=include, text=question)
            keep = hybrid_keep(res, min_score)
        else:
            res = self.collection.search(q, k=n, filter=filter, include=include)
            keep = [i for i in range(len(res)) if res.scores[i] >= min_score]
        timings["search_ms"] = 1e3 * (time.perf_counter() - t)
        if use_mmr and keep:
            t = time.perf_counter()
            order = mmr(np.asarray(q, np.float32), np.asarray(res.vectors)[keep], k, mmr_lambda)
            keep = [keep[j] for j in order]
            timings["rerank_ms"] = 1e3 * (time.perf_counter() - t)
        out = []
        for number, i in enumerate(keep[:k], start=1):
            m = res.metadata[i]
            out.append(Citation(number, m["source"], int(m["chunk"]), float(res.scores[i]), m["text"], m.get("title")))
        return out

    # ------------------------------------------------------------------- ask
    def ask(self, question: str, **kw: Any) -> Answer:
        """Answer ``question`` from the collection (see ``ask_stream`` for the options)."""
        for event in self.ask_stream(question, **kw):
            if isinstance(event, Answer):
                return event
        raise AssertionError("ask_stream ended without an Answer")  # pragma: no cover

    def ask_stream(self, question: str, k: int = 4, *, filter: Any = None, min_score: float = 0.0,
                   use_mmr: bool = False, fetch_k: int | None = None, mmr_lambda: float = 0.5,
                   sampling: Any = None, use_cache: bool = True) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as they are generated, then the final :class:`Answer`.

        With no chunk above ``min_score`` the answer is :data:`UNKNOWN_ANSWER` and the model is not called.
        """
        if not isinstance(question, str) or not question.strip():
            raise InvalidArgumentError("question must be a non-empty string")
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q = self.embedder.encode([question])[0]
        timings["embed_ms"] = 1e3 * (time.perf_counter() - t)
        scope = repr((k, filter, min_score, use_mmr, fetch_k, mmr_lambda, sampling or self.sampling))
        if self.cache is not None and use_cache:
            hit = self.cache.lookup(q, scope)
            if hit is not None:
                cached, similarity = hit
                answer = Answer(question, cached.text, cached.citations,
                                {**timings, "cache_similarity": similarity, "total_ms": 1e3 * (time.perf_counter() - t0)},
                                cached=True, finish_reason=cached.finish_reason)
                yield answer.text
                yield answer
                return
        citations = self.retrieve(question, k, filter=filter, min_score=min_score, use_mmr=use_mmr, fetch_k=fetch_k,
                                  mmr_lambda=mmr_lambda, query_vector=q, timings=timings)
        if not citations:
            text, finish = UNKNOWN_ANSWER, "no_sources"
            yield text
        else:
            if self.generator is None:
                raise InvalidArgumentError("this pipeline has no generator; pass generator= to answer questions")
            t = time.perf_counter()
            pieces: list[str] = []
            first = None
            for event in self.generator.stream(build_messages(question, citations), sampling or self.sampling):
                if event.text:
                    first = first if first is not None else time.perf_counter()
                    pieces.append(event.text)
                    yield event.text
            done = time.perf_counter()
            timings["generate_ms"] = 1e3 * (done - t)
            timings["first_token_ms"] = 1e3 * ((first or done) - t)
            timings["generated_pieces"] = float(len(pieces))
            text, finish = _drop_unknown_markers("".join(pieces), len(citations)), "stop"
        timings["total_ms"] = 1e3 * (time.perf_counter() - t0)
        answer = Answer(question, text, citations, timings, finish_reason=finish)
        if self.cache is not None and use_cache:
            self.cache.put(q, answer, {c.source for c in citations}, scope)
        yield answer


RETRIEVAL = ("auto", "dense", "hybrid")


def hybrid_retrieval(collection: Any, retrieval: str) -> bool:
    """Whether to fuse BM25 on the chunks' ``text`` with the dense search: ``hybrid`` (the collection
    must have ``text`` as a text field), ``dense``, or ``auto`` (hybrid when it has)."""
    if retrieval not in RETRIEVAL:
        raise InvalidArgumentError(f"retrieval must be one of {RETRIEVAL}, got {retrieval!r}")
    lexical = getattr(collection, "lexical", "unknown")  # a remote collection: the server checks
    has_text = lexical not in (None, "unknown") and "text" in lexical.text_fields
    if retrieval == "hybrid" and not has_text and lexical != "unknown":
        raise InvalidArgumentError("hybrid retrieval needs a collection created with text_fields=['text']")
    return retrieval == "hybrid" or (retrieval == "auto" and has_text)


def hybrid_keep(res: Any, min_score: float) -> list[int]:
    """Fused hits to cite: those whose cosine passes ``min_score``, and those only BM25 found (they share the
    question's words), unless no hit passes the cosine threshold (then nothing: the answer is unknown)."""
    dense = [r.get("dense") for r in res.retrievers]
    if not any(d is not None and d >= min_score for d in dense):
        return []
    return [i for i, d in enumerate(dense) if d is None or d >= min_score]


def _text_source(text: Any) -> str:
    """A plain string's source: its content hash, so equal texts replace each other and different ones never do."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"ingest takes Documents or strings, got {type(text).__name__}")
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _drop_unknown_markers(text: str, n_sources: int) -> str:
    """Remove [n] markers that refer to no retrieved source, so an answer cites only what it was given."""
    return _MARKER.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= n_sources else "", text)
