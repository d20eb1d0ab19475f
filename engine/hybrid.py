"""One search call over dense vectors, BM25 text fields and sparse vectors, fused.

``col.search(queries, k, text=..., sparse=..., fusion="rrf")``: each retriever
given (``dense``, ``bm25:<field>`` per text field, ``sparse:<field>``) fetches its
candidates under the same filter (``fusion_params={"prefetch": n}``, default
``10 * k``) and ``engine.fusion`` merges them; with one retriever its own top-k and
scores are returned. Each hit reports the retrievers that found it with their raw
scores (``QueryResult.retrievers``). All retrievers read the shard under one read
lock, so they see the same records.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .echo import shorten
from .errors import InvalidArgumentError
from .fusion import FusionParams, fuse
from .lexical import LexicalConfig, LexicalQuery, parse_sparse, search_postings, sparse_query, text_query
from .metrics import prepare, scores_from_distances
from .results import QueryResult
from .validation import as_matrix, check_k

if TYPE_CHECKING:
    from .collection import Collection


_DEFAULT_FUSION = FusionParams.from_options("rrf", None)


def _batch(value: Any, single_type: Any, what: str) -> tuple[list[Any], bool]:
    """``(items, single)``: one query or a list of them."""
    if isinstance(value, single_type):
        return [value], True
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, single_type) for v in value):
        return list(value), False
    raise InvalidArgumentError(f"{what} must be one query or a non-empty list of them, got {shorten(value)}")


def _per_field(value: Any, fields: tuple[str, ...], kind: str, is_one: Any) -> dict[str, Any]:
    """A query for every field, or a mapping ``field -> query`` naming some of them."""
    if not fields:
        raise InvalidArgumentError(f"collection has no {kind} fields; create it with {kind}_fields=[...]")
    if isinstance(value, Mapping) and not is_one(value):
        unknown = set(value) - set(fields)
        if unknown or not value:
            raise InvalidArgumentError(f"{kind} query names unknown field(s) {sorted(map(str, unknown))}; "
                                       f"{kind} fields: {list(fields)}")
        return dict(value)
    if kind == "sparse" and len(fields) > 1:
        raise InvalidArgumentError(f"collection has several sparse fields {list(fields)}; pass sparse={{field: vector}}")
    return {f: value for f in fields}


def _is_sparse_vector(v: Any) -> bool:
    return isinstance(v, Mapping) and set(v) == {"indices", "values"}


def lexical_queries(config: LexicalConfig | None, text: Any, sparse: Any
                    ) -> tuple[list[tuple[str, LexicalQuery]], list[tuple[int, bool]]]:
    """Parse the text/sparse arguments: ``([(retriever name, query)], [(batch size, single)])``."""
    config = config or LexicalConfig()
    out, shapes = [], []
    if text is not None:
        for name, q in _per_field(text, config.text_fields, "text", lambda v: False).items():
            texts, single = _batch(q, str, f"text query for {name!r}")
            shapes.append((len(texts), single))
            out.append((f"bm25:{name}", text_query(config, name, texts)))
    if sparse is not None:
        for name, q in _per_field(sparse, config.sparse_fields, "sparse", _is_sparse_vector).items():
            vectors, single = _batch(q, Mapping, f"sparse query for {name!r}")
            shapes.append((len(vectors), single))
            out.append((f"sparse:{name}", sparse_query(name, [parse_sparse(v, f"sparse query for {name!r}")
                                                              for v in vectors])))
    return out, shapes


def hybrid_search(col: "Collection", queries: Any, k: int, filter: Any, params: Any, include: tuple[str, ...],
                  text: Any, sparse: Any, fusion: Any, fusion_params: Any) -> QueryResult | list[QueryResult]:
    """``Collection.search`` with ``text`` and/or ``sparse`` (validated here, before anything runs)."""
    from .collection import _filter

    k = check_k(k)
    lexical, shapes = lexical_queries(col.lexical, text, sparse)
    dense = None
    if queries is not None:
        dense = prepare(as_matrix(queries, col.dim, name="queries"), col.metric)
        shapes.append((dense.shape[0], np.ndim(queries) == 1))
    if len({n for n, _ in shapes}) != 1:
        raise InvalidArgumentError(f"queries, text and sparse must hold the same number of queries, got "
                                   f"{[n for n, _ in shapes]}")
    nq, single = shapes[0][0], all(s for _, s in shapes)
    fusion = _DEFAULT_FUSION if fusion == "rrf" and fusion_params is None else FusionParams.from_options(
        fusion, fusion_params)
    n_retrievers = len(lexical) + (dense is not None)
    depth = k if n_retrievers == 1 else check_k(max(k, fusion.prefetch or 10 * k))
    node, key = _filter(filter)
    params = col._template.check_params(params) if dense is not None else {}
    want_meta, want_vectors = "metadata" in include, "vector" in include
    shard = col._shard
    with shard.lock.read():
        shard.check_open()
        found: list[tuple[str, np.ndarray, np.ndarray]] = []
        if dense is not None:
            d, internal, _ = shard.search(dense, depth, node, key, params)
            found.append(("dense", np.where(internal >= 0, scores_from_distances(d, col.metric), -np.inf), internal))
        for name, query in lexical:
            scores, internal, hits = search_postings(col.lexical, shard.segments, query, depth, node, key,
                                                     col.backend)
            found.append((name, scores, internal))
        if n_retrievers == 1:
            return _own_results(shard, name, scores, internal, hits, want_meta, want_vectors, single)
        rows = []
        for qi in range(nq):
            lists = {}
            for name, scores, internal in found:
                keep = internal[qi] >= 0
                lists[name] = (internal[qi][keep], scores[qi][keep])
            ids, scores, per_hit = fuse(fusion, lists, k)
            ext, metadata, vectors = shard.records(ids, want_meta, want_vectors)
            scores = scores.astype(np.float32)
            rows.append(QueryResult(ext, -scores, scores, metadata, vectors, retrievers=per_hit))
    return rows[0] if single else rows


def _own_results(shard: Any, name: str, scores: np.ndarray, internal: np.ndarray, hits: np.ndarray, want_meta: bool,
                 want_vectors: bool, single: bool) -> QueryResult | list[QueryResult]:
    """One retriever's own top-k as results, the batch at once: one ``records`` call for every hit
    (each query's ``hits`` are a prefix of its row)."""
    counts = hits.tolist()
    flat = internal[0, :counts[0]] if single else internal[internal >= 0]
    ext, metadata, vectors = shard.records(flat, want_meta, want_vectors)
    as32 = scores.astype(np.float32)
    dist = -as32
    rows, start = [], 0
    for qi, n in enumerate(counts):
        end = start + n
        rows.append(QueryResult(ext[start:end], dist[qi, :n], as32[qi, :n],
                                None if metadata is None else metadata[start:end],
                                None if vectors is None else vectors[start:end],
                                retrievers=[{name: s} for s in scores[qi, :n].tolist()]))
        start = end
    return rows[0] if single else rows
