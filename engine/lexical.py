"""Full-text (BM25) and sparse-vector fields of a collection: schema, per-segment postings, search.

``create_collection(..., text_fields=["text"], sparse_fields=["splade"],
text_options={"k1": 1.2, "b": 0.75, "stemmer": "english", "stopwords": "english"})``.
A text field is a string in the record's payload; a sparse field is a payload
object ``{"indices": [int, ...], "values": [float, ...]}``. The payload stays the
one copy of the record's data; each segment keeps an inverted index per field
(``index.inverted``) that follows the segment's life: appended with its rows while
growing, frozen at seal, remapped by a merge, written to ``postings.bin`` with the
segment's files and reloaded (rebuilt from the payloads if the file is absent) on
open; the log replay goes through the same appends.

BM25 statistics (N, avgdl, df) are collection-wide over live records having the
field, so a score does not depend on how rows are split into segments or on how
many deleted rows a segment still holds. Per sealed segment they are cached by its
live count (rows of a fixed-size segment only ever die, so the count names the
live set).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..index.inverted import InvertedIndex, PostingsBuilder, merge_indexes
from ..index.tokenizer import Tokenizer, TokenizerConfig
from .backend import Backend, load_kernels
from .echo import shorten
from .errors import InvalidArgumentError
from .filters import Node

if TYPE_CHECKING:
    from .segment import Segment

TEXT_KEYS = np.dtype("U")  # numpy picks the width from the terms
SPARSE_KEYS = np.dtype(np.int64)
#: Largest sparse dimension (indices are stored as int64 keys; 2**32 covers every vocabulary in use).
MAX_SPARSE_INDEX = (1 << 32) - 1


@dataclass(frozen=True)
class LexicalConfig:
    """A collection's text and sparse fields and BM25 settings (persisted in its manifest)."""

    text_fields: tuple[str, ...] = ()
    sparse_fields: tuple[str, ...] = ()
    k1: float = 1.2
    b: float = 0.75
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    @classmethod
    def from_options(cls, text_fields: Any, sparse_fields: Any, text_options: Any) -> "LexicalConfig | None":
        text = _field_names(text_fields, "text_fields")
        sparse = _field_names(sparse_fields, "sparse_fields")
        if set(text) & set(sparse):
            raise InvalidArgumentError(f"fields {sorted(set(text) & set(sparse))} are both text and sparse fields")
        options = dict(text_options or {}) if isinstance(text_options, (Mapping, type(None))) else None
        if options is None:
            raise InvalidArgumentError(f"text_options must be a dict, got {shorten(text_options)}")
        known = {"k1", "b"} | set(TokenizerConfig.__dataclass_fields__)
        if set(options) - known:
            raise InvalidArgumentError(f"unknown text option(s) {sorted(set(options) - known)}; known: {sorted(known)}")
        if not text and not sparse:
            if options:
                raise InvalidArgumentError("text_options need text_fields")
            return None
        k1, b = options.get("k1", cls.k1), options.get("b", cls.b)
        if isinstance(k1, bool) or not isinstance(k1, (int, float)) or not 0 <= k1 < math.inf:
            raise InvalidArgumentError(f"text option k1 must be a finite number >= 0, got {shorten(k1)}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 1:
            raise InvalidArgumentError(f"text option b must be a number in [0, 1], got {shorten(b)}")
        return cls(text, sparse, float(k1), float(b), TokenizerConfig.from_options(options))

    def to_options(self) -> dict[str, Any]:
        """The keyword arguments that recreate this config (``Collection(**...)``)."""
        return {"text_fields": list(self.text_fields), "sparse_fields": list(self.sparse_fields),
                "text_options": {"k1": self.k1, "b": self.b, **self.tokenizer.to_dict()}}

    @property
    def fields(self) -> tuple[str, ...]:
        return self.text_fields + self.sparse_fields

    def check_payloads(self, payloads: list[dict[str, Any]]) -> None:
        """Text fields must be strings, sparse fields ``{"indices", "values"}`` (absent or None: no value)."""
        for i, payload in enumerate(payloads):
            for name in self.text_fields:
                value = payload.get(name)
                if value is not None and not isinstance(value, str):
                    raise InvalidArgumentError(f"metadata[{i}].{name} is a text field and must be a string, "
                                               f"got {type(value).__name__}")
            for name in self.sparse_fields:
                if payload.get(name) is not None:
                    parse_sparse(payload[name], f"metadata[{i}].{name}")


def _field_names(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(
            isinstance(v, str) and v and not v.startswith("$") for v in value):
        raise InvalidArgumentError(f"{name} must be a list of payload field names, got {shorten(value)}")
    if len(set(value)) != len(value):
        raise InvalidArgumentError(f"{name} lists a field twice: {shorten(value)}")
    return tuple(value)


def parse_sparse(value: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A sparse vector ``{"indices": [...], "values": [...]}`` (or a pair) as (int64, float32) arrays."""
    if isinstance(value, Mapping) and set(value) == {"indices", "values"}:
        indices, values = value["indices"], value["values"]
    elif isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value[0], (int, float)):
        indices, values = value
    else:
        raise InvalidArgumentError(f"{where} must be a sparse vector {{'indices': [...], 'values': [...]}}, "
                                   f"got {shorten(value)}")
    try:
        idx = np.asarray(indices)
        val = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: indices must be integers and values numbers") from None
    if idx.ndim != 1 or val.ndim != 1 or idx.size != val.size:
        raise InvalidArgumentError(f"{where}: indices and values must be 1-D lists of the same length, "
                                   f"got {idx.size} indices and {val.size} values")
    if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() > MAX_SPARSE_INDEX):
        raise InvalidArgumentError(f"{where}: indices must be integers in [0, {MAX_SPARSE_INDEX}]")
    if np.unique(idx).size != idx.size:
        raise InvalidArgumentError(f"{where}: indices contain duplicates")
    if not np.isfinite(val).all():
        raise InvalidArgumentError(f"{where}: values must be finite")
    return idx.astype(np.int64), val.astype(np.float32)


class SegmentPostings:
    """A segment's inverted index per field: builders while growing, frozen once sealed."""

    def __init__(self, config: LexicalConfig, fields: dict[str, PostingsBuilder | InvertedIndex] | None = None) -> None:
        self.config = config
        self._tokenize = Tokenizer(config.tokenizer)
        self.fields = fields if fields is not None else {
            **{f: PostingsBuilder(TEXT_KEYS) for f in config.text_fields},
            **{f: PostingsBuilder(SPARSE_KEYS) for f in config.sparse_fields}}
        self._stats: dict[str, tuple[tuple[int, int], Any]] = {}

    def append(self, payloads: list[dict[str, Any]]) -> None:
        """Index the rows' fields (validated at upsert by ``LexicalConfig.check_payloads``)."""
        for name, builder in self.fields.items():
            entry = self._text_entry if name in self.config.text_fields else self._sparse_entry
            for payload in payloads:
                value = payload.get(name)
                builder.add(*(entry(value) if value is not None else (None, None, 0.0)))

    def _text_entry(self, text: str) -> tuple[list[str], list[int], float]:
        counts = _counts(self._tokenize(text))
        return list(counts), list(counts.values()), float(sum(counts.values()))

    @staticmethod
    def _sparse_entry(vector: Any) -> tuple[list[int], np.ndarray, float]:
        idx, val = parse_sparse(vector, "sparse vector")
        return idx.tolist(), val, 0.0

    def index(self, name: str) -> InvertedIndex:
        f = self.fields[name]
        return f.freeze() if isinstance(f, PostingsBuilder) else f

    def frozen(self) -> dict[str, InvertedIndex]:
        return {name: self.index(name) for name in self.fields}

    def freeze(self) -> None:
        """At seal: the builders become immutable indexes."""
        self.fields = self.frozen()

    def text_stats(self, name: str, seg: "Segment", kernels: Any) -> tuple[int, float, np.ndarray]:
        """``(live docs with the field, their total length, df per local term and a final 0)`` of this segment."""
        key = (seg.n, seg.live_count)
        hit = self._stats.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        index = self.index(name)
        live = seg.live[: seg.n]
        have = index.present & live
        df = np.diff(index.offsets) if seg.live_count == seg.n else kernels.live_df(index.offsets, index.rows, live)
        stats = (int(have.sum()), float(index.doclen[have].sum(dtype=np.float64)), np.append(df, 0))
        self._stats[name] = (key, stats)
        return stats


def attach_postings(seg: "Segment", config: LexicalConfig | None, stored: dict[str, InvertedIndex] | None = None) -> None:
    """Give a segment its postings: new (growing), loaded (``stored``, from its files) or rebuilt
    from its payloads (a segment written without them)."""
    if config is None:
        return
    if stored is not None and set(stored) == set(config.fields):
        seg.postings = SegmentPostings(config, dict(stored))
        return
    postings = SegmentPostings(config)
    if seg.n:
        postings.append(seg.meta.payloads(np.arange(seg.n)))
    if seg.sealed:
        postings.freeze()
    seg.postings = postings


def merged_postings(config: LexicalConfig, base: "Segment | None", sources: list["Segment"],
                    taken: list[np.ndarray], n: int) -> SegmentPostings:
    """The postings of a merged segment: the base's rows in place, then each source's taken rows."""
    fields = {}
    for name in config.fields:
        parts, offset = [], 0
        if base is not None:
            parts.append((base.postings.index(name), np.arange(base.n, dtype=np.int64)))
            offset = base.n
        for src, rows in zip(sources, taken):
            row_map = np.full(src.n, -1, np.int64)
            row_map[rows] = np.arange(offset, offset + rows.size)
            parts.append((src.postings.index(name), row_map))
            offset += rows.size
        fields[name] = merge_indexes(parts, n, TEXT_KEYS if name in config.text_fields else SPARSE_KEYS)
    return SegmentPostings(config, fields)


# ------------------------------------------------------------------ search
@dataclass
class LexicalQuery:
    """One retriever's batch, flat: the batch's distinct keys once, each query's terms as slots into them."""

    field: str
    bm25: bool
    #: distinct keys of the batch (terms, or sparse indices as ints), in order of first use
    keys: list[Any]
    #: int64, per query term: its key's position in ``keys``; query q owns ``[offsets[q], offsets[q+1])``
    slots: np.ndarray
    #: float64 per slot: the term's count in the query (BM25) or the query's value (sparse)
    weights: np.ndarray
    offsets: np.ndarray


def _flat_query(name: str, bm25: bool, queries: Iterable[tuple[Iterable[Any], Iterable[float]]]) -> LexicalQuery:
    ids: dict[Any, int] = {}
    slots: list[int] = []
    weights: list[float] = []
    offsets = [0]
    for keys, values in queries:
        slots.extend([ids.setdefault(key, len(ids)) for key in keys])
        weights.extend(values)
        offsets.append(len(slots))
    return LexicalQuery(name, bm25, list(ids), np.array(slots, np.int64), np.array(weights, np.float64),
                        np.array(offsets, np.int64))


def text_query(config: LexicalConfig, name: str, texts: list[str]) -> LexicalQuery:
    """Tokenise query texts; a term repeated in the query counts that many times (as in bm25s)."""
    tokenize = _tokenizer(config.tokenizer)
    if len(texts) == 1:  # one query's terms are distinct: its slots are 0..m-1
        counts = _counts(tokenize(texts[0]))
        m = len(counts)
        return LexicalQuery(name, True, list(counts), np.arange(m), np.fromiter(counts.values(), np.float64, m),
                            np.array([0, m]))
    counts = [_counts(tokenize(text)) for text in texts]
    return _flat_query(name, True, ((c, c.values()) for c in counts))


def _counts(terms: list[str]) -> dict[str, int]:
    """Term -> count, in order of first use (a dict loop: ``Counter``'s set-up costs more for a query)."""
    out: dict[str, int] = {}
    get = out.get
    for t in terms:
        out[t] = get(t, 0) + 1
    return out


def sparse_query(name: str, vectors: list[tuple[np.ndarray, np.ndarray]]) -> LexicalQuery:
    return _flat_query(name, False, ((idx.tolist(), val.tolist()) for idx, val in vectors))


@functools.lru_cache(maxsize=64)
def _tokenizer(config: TokenizerConfig) -> Tokenizer:
    return Tokenizer(config)


def search_postings(config: LexicalConfig, segments: list["Segment"], query: LexicalQuery, k: int,
                    node: Node | None, filter_key: str | None, backend: Backend
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k ``(scores, internal ids, hits per query)`` of a batch over all segments, best first
    (-inf / -1 padded after the hits).

    The batch's distinct keys are looked up once per segment (a dict each); one kernel call per
    segment scores every query into one set of result heaps, so a segment starts pruning at the
    k-th score of those before it and no merge is left to do (issue 22: a one-query call spent
    ~100 us here besides the kernel in ~30 small numpy calls; now ~7 per segment)."""
    kernels = _kernels(backend)
    out_d, out_i = kernels.empty_results(query.offsets.shape[0] - 1, k)
    segments = [s for s in segments if s.n and s.live_count] if query.keys else []
    indexes = [seg.postings.index(query.field) for seg in segments]
    locals_ = [index.lookup(query.keys) for index in indexes]
    weights, params = query.weights, None
    if query.bm25 and segments:
        # collection-wide statistics: N, avgdl and df summed over segments (live rows only)
        df, docs, length = 0, 0, 0.0
        for seg, local in zip(segments, locals_):
            n_seg, len_seg, df_seg = seg.postings.text_stats(query.field, seg, kernels)
            docs, length = docs + n_seg, length + len_seg
            df = df + df_seg[local]  # df_seg ends with a 0, what an absent key (-1) reads
        if docs == 0:
            segments = []
        params = (config.k1, config.b, max(length / max(docs, 1), 1e-9))
        weights = kernels.idf_weights(df, docs, query.slots, weights)
    # one query's keys are its slots in order: no gather
    same = len(query.keys) == query.slots.shape[0]
    for seg, index, local in zip(segments, indexes, locals_):
        mask, count = seg.match(node, filter_key)
        if not count:
            continue
        allowed = seg.live[: seg.n] if mask is None else mask
        impacts = index.impacts().prepare(local, params, kernels)
        kernels.topk(index.offsets, index.rows, *impacts, query.offsets, local if same else local[query.slots],
                     weights, allowed[: index.n], seg.base, out_d, out_i)
    return out_d, out_i, kernels.finish(out_d, out_i)


@functools.lru_cache(maxsize=None)
def _kernels(backend: Backend) -> Any:
    return load_kernels("shoal.index.kernels", "bm25", backend)
