"""LlamaIndex on Shoal: ``ShoalVectorStore`` (a ``BasePydanticVectorStore``) and ``ShoalEmbedding``.

    from llama_index.core import StorageContext, VectorStoreIndex
    from shoal.integrations.llama_index import ShoalEmbedding, ShoalVectorStore
    store = ShoalVectorStore(collection=db.create_collection("docs", dim=384))
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=ShoalEmbedding("minilm"))

The store wraps an embedded ``shoal.Collection`` or a ``shoal.Client`` collection. A node is one
record: the node id, its embedding, and LlamaIndex's usual payload (``node_to_metadata_dict``: the
node's metadata fields at the top level, the whole node with its text as JSON in ``_node_content``,
and ``ref_doc_id``/``doc_id``/``document_id``), so the text lives in the payload (``stores_text``).

``MetadataFilters`` are translated into Shoal's filter language (``to_shoal_filter``): ``== != > >= <
<= in nin any all contains is_empty`` and the conditions ``and``, ``or``, ``not``, nested. Shoal has no
substring match, so ``text_match`` and ``text_match_insensitive`` raise ``FilterError``. ``is_empty``
matches a field that is missing, null or ""; Shoal cannot test a list's length, so a field holding
``[]`` does not count as empty here.

Query modes: ``default`` and ``mmr`` (``mmr_threshold`` as LlamaIndex defines it, from the query or the
``mmr_threshold=`` keyword; candidates are the
``mmr_prefetch_k`` nearest, by default ``mmr_prefetch_factor`` = 4 times ``similarity_top_k``). The
async methods run the sync ones in a worker thread.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.schema import BaseNode, TextNode
    from llama_index.core.vector_stores.types import (BasePydanticVectorStore, FilterCondition, FilterOperator,
                                                      MetadataFilter, MetadataFilters, VectorStoreQuery,
                                                      VectorStoreQueryMode, VectorStoreQueryResult)
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("shoal.integrations.llama_index needs llama-index-core: pip install 'shoal[llama-index]'") from exc

from ..engine.errors import FilterError, InvalidArgumentError
from ._records import delete_existing, get_existing, local_scores, scan
from .embeddings import resolve_embedder

__all__ = ["ShoalVectorStore", "ShoalEmbedding", "to_shoal_filter", "DEFAULT_MMR_PREFETCH_FACTOR"]

#: Candidates fetched per wanted MMR result (the LlamaIndex stores that prefetch use the same default).
DEFAULT_MMR_PREFETCH_FACTOR = 4.0
_COLLECTION_API = ("upsert", "search", "get", "delete", "count", "dim", "metric")
_QUERY_OPTIONS = ("params", "mmr_threshold", "mmr_prefetch_k", "mmr_prefetch_factor")
_RANGE = {FilterOperator.GT: "$gt", FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte"}


def _no_options(kwargs: dict[str, Any], where: str) -> None:
    if kwargs:
        raise InvalidArgumentError(f"{where} got unknown keyword argument(s) {sorted(kwargs)}; it takes none")


# ---------------------------------------------------------------- filters
def to_shoal_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` as a Shoal filter (None for no filter); FilterError for what Shoal cannot express."""
    if filters is None or not filters.filters:
        return None
    return _filters(filters)


def _filters(filters: MetadataFilters) -> dict[str, Any]:
    if not filters.filters:
        return {}
    clauses = [_filters(f) if isinstance(f, MetadataFilters) else _clause(f) for f in filters.filters]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.NOT:  # LlamaIndex: match when none of the filters match
        return {"$not": clauses[0] if len(clauses) == 1 else {"$or": clauses}}
    if len(clauses) == 1:
        return clauses[0]
    if condition == FilterCondition.AND:
        return {"$and": clauses}
    if condition == FilterCondition.OR:
        return {"$or": clauses}
    raise FilterError(f"unknown filter condition {condition!r}; Shoal supports and, or, not")


def _clause(f: MetadataFilter) -> dict[str, Any]:
    key, op, value = f.key, FilterOperator(f.operator), f.value
    where = f"filter on {key!r} ({op.value})"

    def scalar() -> Any:
        if isinstance(value, list):
            raise FilterError(f"{where} takes one value, got the list {value!r}; use 'in', 'any' or 'all' for lists")
        return value

    def values() -> list[Any]:
        if not isinstance(value, list):
            raise FilterError(f"{where} takes a list of values, got {value!r}")
        return value

    if op == FilterOperator.EQ:
        return {key: {"$eq": scalar()}}
    if op == FilterOperator.NE:
        return {key: {"$ne": scalar()}}
    if op in _RANGE:
        return {key: {_RANGE[op]: scalar()}}
    if op == FilterOperator.IN:
        return {key: {"$in": values()}}
    if op == FilterOperator.NIN:
        return {key: {"$nin": values()}}
    if op == FilterOperator.ANY:  # equality on a list field matches any element
        return {key: {"$in": values()}}
    if op == FilterOperator.ALL:
        wanted = values()
        return {"$and": [{key: {"$eq": v}} for v in wanted]} if wanted else {}
    if op == FilterOperator.CONTAINS:
        return {key: {"$eq": scalar()}}
    if op == FilterOperator.IS_EMPTY:  # {key: None} is null or missing; [] cannot be told apart (module docstring)
        return {"$or": [{key: {"$eq": None}}, {key: {"$eq": ""}}]}
    raise FilterError(f"{where}: Shoal's filter language has no substring match, so LlamaIndex's {op.value!r} cannot "
                      "be expressed; filter on exact values (==, in, any, all, contains) or post-filter the results")


# ------------------------------------------------------------------ store
class ShoalVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one Shoal collection, embedded or served."""

    stores_text: bool = True
    flat_metadata: bool = False

    _collection: Any = PrivateAttr()

    def __init__(self, collection: Any, **kwargs: Any) -> None:
        missing = [name for name in _COLLECTION_API if not hasattr(collection, name)]
        if missing:
            raise InvalidArgumentError(f"collection must be a shoal.Collection or a shoal.Client collection "
                                       f"(it lacks {', '.join(missing)}); got {type(collection).__name__}")
        super().__init__(**kwargs)
        self._collection = collection

    @classmethod
    def class_name(cls) -> str:
        return "ShoalVectorStore"

    @property
    def client(self) -> Any:
        """The Shoal collection."""
        return self._collection

    @property
    def collection(self) -> Any:
        return self._collection

    # ----------------------------------------------------------------- writes
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Upsert nodes (an existing node id is replaced); they must carry embeddings."""
        _no_options(kwargs, "add")
        if not nodes:
            return []
        ids = [node.node_id for node in nodes]
        vectors = np.asarray([node.get_embedding() for node in nodes], np.float32)
        payloads = [node_to_metadata_dict(node, remove_text=False, flat_metadata=self.flat_metadata) for node in nodes]
        self._collection.upsert(ids, vectors, payloads)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        _no_options(delete_kwargs, "delete")
        self._collection.delete(filter={"ref_doc_id": ref_doc_id})

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete the given nodes (missing ids are ignored) that match ``filters``; with neither, every node
        (as LlamaIndex's SimpleVectorStore does)."""
        _no_options(delete_kwargs, "delete_nodes")
        shoal_filter = to_shoal_filter(filters)
        if node_ids is not None:
            delete_existing(self._collection, list(node_ids), shoal_filter)
        else:
            self._collection.delete(filter={} if shoal_filter is None else shoal_filter)

    def clear(self) -> None:
        self._collection.delete(filter={})

    # ------------------------------------------------------------------ reads
    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes (with embeddings) among ``node_ids`` (missing ones left out) that match ``filters``;
        with neither, every node."""
        shoal_filter = to_shoal_filter(filters)
        if node_ids is None:
            found = scan(self._collection, shoal_filter, include=("metadata", "vector"))
            return [self._node(i, m, v) for i, m, v in zip(found.ids, found.metadata, found.vectors)]
        got = get_existing(self._collection, list(node_ids))
        keep = self._matching(got.ids, shoal_filter)
        return [self._node(got.ids[j], got.metadata[j], got.vectors[j]) for j in keep]

    def _matching(self, ids: list[Any], shoal_filter: dict[str, Any] | None) -> list[int]:
        """Positions in ``ids`` whose records match the filter (the filter language cannot name ids: a scan)."""
        if shoal_filter is None:
            return list(range(len(ids)))
        allowed = set(scan(self._collection, shoal_filter, include=()).ids)
        return [j for j, i in enumerate(ids) if i in allowed]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nearest nodes to ``query.query_embedding`` among those matching
        ``filters``, ``doc_ids`` and ``node_ids``; similarities are Shoal's scores (MMR: LlamaIndex's MMR scores)."""
        unknown = sorted(set(kwargs) - set(_QUERY_OPTIONS))
        if unknown:
            raise InvalidArgumentError(f"query got unknown keyword argument(s) {unknown}; it takes {', '.join(_QUERY_OPTIONS)}")
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            mode = getattr(query.mode, "value", query.mode)
            raise InvalidArgumentError(f"query mode {mode!r} is not supported by ShoalVectorStore; use 'default' or 'mmr'")
        if query.query_embedding is None:
            raise InvalidArgumentError("ShoalVectorStore searches by vector: the query needs query_embedding "
                                       "(LlamaIndex retrievers set it, since is_embedding_query is True)")
        k = query.similarity_top_k
        mmr = query.mode == VectorStoreQueryMode.MMR
        fetch = self._prefetch(k, kwargs) if mmr else k
        q = np.asarray(query.query_embedding, np.float32)
        shoal_filter = self._query_filter(query)
        include = ("metadata", "vector") if mmr else ("metadata",)
        if query.node_ids:
            ids, payloads, vectors, scores = self._among(query.node_ids, q, shoal_filter, fetch)
        else:
            found = self._collection.search(q, k=fetch, filter=shoal_filter, params=kwargs.get("params"),
                                            include=include)
            ids, payloads, vectors, scores = found.ids, found.metadata, found.vectors, found.scores.tolist()
        if mmr and ids:
            mmr_scores, picked = get_top_k_mmr_embeddings(q.tolist(), np.asarray(vectors, np.float32).tolist(),
                                                          similarity_top_k=k, embedding_ids=list(range(len(ids))),
                                                          mmr_threshold=self._mmr_threshold(query, kwargs))
            ids, payloads, scores = [ids[j] for j in picked], [payloads[j] for j in picked], list(mmr_scores)
        nodes = [self._node(i, m) for i, m in zip(ids, payloads)]
        return VectorStoreQueryResult(nodes=nodes, similarities=[float(s) for s in scores], ids=[str(i) for i in ids])

    @staticmethod
    def _mmr_threshold(query: VectorStoreQuery, kwargs: dict[str, Any]) -> float | None:
        """``mmr_threshold`` from the query, or from the keyword (where SimpleVectorStore and the retrievers'
        ``vector_store_kwargs`` put it), which wins."""
        value = kwargs.get("mmr_threshold", query.mmr_threshold)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise InvalidArgumentError(f"mmr_threshold must be in [0, 1] (1: relevance only, 0: diversity only), got {value!r}")
        return value

    @staticmethod
    def _prefetch(k: int, kwargs: dict[str, Any]) -> int:
        if kwargs.get("mmr_prefetch_k") is not None:
            fetch = kwargs["mmr_prefetch_k"]
            if isinstance(fetch, bool) or not isinstance(fetch, int) or fetch < 1:
                raise InvalidArgumentError(f"mmr_prefetch_k must be a positive integer, got {fetch!r}")
            return max(fetch, k)
        factor = kwargs.get("mmr_prefetch_factor")
        factor = DEFAULT_MMR_PREFETCH_FACTOR if factor is None else factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            raise InvalidArgumentError(f"mmr_prefetch_factor must be a number >= 1, got {factor!r}")
        return max(k, math.ceil(k * factor))

    @staticmethod
    def _query_filter(query: VectorStoreQuery) -> dict[str, Any] | None:
        parts = []
        translated = to_shoal_filter(query.filters)
        if translated:
            parts.append(translated)
        if query.doc_ids:
            parts.append({"ref_doc_id": {"$in": list(query.doc_ids)}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _among(self, node_ids: list[str], q: np.ndarray, shoal_filter: dict[str, Any] | None, k: int
               ) -> tuple[list[Any], list[dict[str, Any]], np.ndarray, list[float]]:
        """The top ``k`` of the given nodes, scored here (the candidates are few: those named)."""
        got = get_existing(self._collection, list(node_ids))
        keep = self._matching(got.ids, shoal_filter)
        vectors = got.vectors[keep]
        scores = local_scores(self._collection.metric, q, vectors)
        order = np.argsort(-scores, kind="stable")[:k]
        return ([got.ids[keep[j]] for j in order], [got.metadata[keep[j]] for j in order], vectors[order],
                scores[order].tolist())

    @staticmethod
    def _node(id_: Any, payload: dict[str, Any], vector: np.ndarray | None = None) -> BaseNode:
        if "_node_content" in payload:
            node = metadata_dict_to_node(payload)
        else:  # a record written without LlamaIndex: its payload becomes the metadata
            node = TextNode(id_=str(id_), text="", metadata=dict(payload))
        if vector is not None:
            node.embedding = np.asarray(vector, np.float32).tolist()
        return node

    # ------------------------------------------------------------------ async
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)


# ------------------------------------------------------------- embeddings
class ShoalEmbedding(BaseEmbedding):
    """One of Shoal's embedders (``shoal.rag``: ``"minilm"``, ``"bloom"``, or an instance) as a LlamaIndex
    embedding model; ``options`` go to the named embedder's constructor."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Any = "minilm", *, embed_batch_size: int = 32, **options: Any) -> None:
        resolved = resolve_embedder(embedder, **options)
        super().__init__(model_name=resolved.name, embed_batch_size=embed_batch_size)
        self._embedder = resolved

    @classmethod
    def class_name(cls) -> str:
        return "ShoalEmbedding"

    @property
    def dim(self) -> int:
        return int(self._embedder.dim)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._embedder.encode(list(texts), batch_size=self.embed_batch_size).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
