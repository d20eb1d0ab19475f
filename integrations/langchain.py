"""LangChain on Shoal: ``ShoalVectorStore`` (a ``langchain_core`` VectorStore) and ``ShoalEmbeddings``.

    from shoal.integrations.langchain import ShoalEmbeddings, ShoalVectorStore
    store = ShoalVectorStore.from_texts(texts, ShoalEmbeddings("minilm"), metadatas=metadatas)
    store.similarity_search("how do I rotate keys?", k=4, filter={"lang": "en"})
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 4})

The store wraps an embedded ``shoal.Collection`` or a ``shoal.Client`` collection
(``ShoalVectorStore(embedding=..., collection=...)``). Each document is one record: its id, the
embedding, and a payload holding the metadata fields with the text under ``text_key``
("page_content"), so ``filter=`` is Shoal's filter language over the metadata fields as they are
(``{"year": {"$gte": 2020}}``). Ids are kept as given (LangChain's are strings; generated ones are
UUID4 strings); adding a document under an existing id replaces it.

Distances from ``similarity_search_with_score`` are Shoal's (smaller is better: ``1 - cos`` for
cosine, squared L2, minus the inner product). Relevance scores (``similarity_search_with_relevance_scores``,
``score_threshold``) are the cosine similarity clipped to [0, 1] for unit-norm embeddings under all
three metrics.

The async methods embed with the embedding's own async calls (``aembed_documents``/``aembed_query``)
and run Shoal's calls, which block, in a worker thread, so a served collection never stalls the loop.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("shoal.integrations.langchain needs langchain-core: pip install 'shoal[langchain]'") from exc

from ..engine.errors import DimensionMismatchError, InvalidArgumentError
from ._records import delete_existing, get_existing
from .embeddings import resolve_embedder

__all__ = ["ShoalVectorStore", "ShoalEmbeddings", "DEFAULT_TEXT_KEY"]

DEFAULT_TEXT_KEY = "page_content"
_COLLECTION_API = ("upsert", "search", "get", "delete", "count", "dim", "metric")
_SEARCH_OPTIONS = ("params",)  # besides filter=: Shoal's per-call index parameters, e.g. {"ef": 64}


def _check_options(options: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"the only other one it takes is {', '.join(allowed)}" if allowed else "it takes no others"
        raise InvalidArgumentError(f"{where} got unknown keyword argument(s) {unknown}; {takes}")


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


class ShoalVectorStore(VectorStore):
    """A LangChain vector store over one Shoal collection, embedded or served."""

    def __init__(self, embedding: Embeddings, collection: Any, *, text_key: str = DEFAULT_TEXT_KEY) -> None:
        missing = [name for name in _COLLECTION_API if not hasattr(collection, name)]
        if missing:
            raise InvalidArgumentError(f"collection must be a shoal.Collection or a shoal.Client collection "
                                       f"(it lacks {', '.join(missing)}); got {type(collection).__name__}")
        if not isinstance(text_key, str) or not text_key or text_key.startswith("$"):
            raise InvalidArgumentError(f"text_key must be a non-empty field name not starting with '$', got {text_key!r}")
        self.embedding = embedding
        self.collection = collection
        self.text_key = text_key

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    # ----------------------------------------------------------------- writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed and upsert ``texts``; ``ids`` (or the documents' ids) are kept, None ones generated."""
        _check_options(kwargs, (), "add_texts")
        texts = list(texts)
        if not texts:
            return []
        return self._upsert(texts, self.embedding.embed_documents(texts), metadatas, ids)

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        _check_options(kwargs, (), "aadd_texts")
        texts = list(texts)
        if not texts:
            return []
        vectors = await self.embedding.aembed_documents(texts)
        return await asyncio.to_thread(self._upsert, texts, vectors, metadatas, ids)

    def _upsert(self, texts: list[str], vectors: Sequence[Sequence[float]], metadatas: Sequence[dict[str, Any]] | None,
                ids: Sequence[Any] | None) -> list[Any]:
        n = len(texts)
        if metadatas is not None and len(metadatas) != n:
            raise InvalidArgumentError(f"got {len(metadatas)} metadatas for {n} texts; lengths must match")
        if ids is not None and len(ids) != n:
            raise InvalidArgumentError(f"got {len(ids)} ids for {n} texts; lengths must match")
        out = [str(uuid.uuid4()) if i is None or i == "" else i for i in (ids if ids is not None else [None] * n)]
        payloads = [self._payload(t, None if metadatas is None else metadatas[j], j) for j, t in enumerate(texts)]
        self.collection.upsert(out, np.asarray(vectors, np.float32), payloads)
        return out

    def _payload(self, text: str, metadata: dict[str, Any] | None, row: int) -> dict[str, Any]:
        if not isinstance(text, str):
            raise InvalidArgumentError(f"texts[{row}] must be a string, got {type(text).__name__}")
        payload = dict(metadata or {})
        if self.text_key in payload:
            raise InvalidArgumentError(f"metadatas[{row}] has a field {self.text_key!r}, where this store keeps the "
                                       "text; rename that field or create the store with another text_key=")
        payload[self.text_key] = text
        return payload

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete ``ids`` (missing ones are ignored), or every record matching ``filter=``, or with
        neither, everything."""
        filter = kwargs.pop("filter", None)
        _check_options(kwargs, (), "delete")
        if ids is None:
            self.collection.delete(filter={} if filter is None else filter)
        else:
            delete_existing(self.collection, list(ids), filter)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        return await asyncio.to_thread(self.delete, ids, **kwargs)

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of those ``ids`` that exist, in request order (missing ids are left out)."""
        got = get_existing(self.collection, list(ids))
        return [self._document(i, m) for i, m in zip(got.ids, got.metadata)]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await asyncio.to_thread(self.get_by_ids, ids)

    def _document(self, id_: Any, payload: dict[str, Any] | None) -> Document:
        metadata = dict(payload or {})
        text = metadata.pop(self.text_key, "")
        return Document(id=str(id_), page_content=text if isinstance(text, str) else str(text), metadata=metadata)

    def similarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: Any = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents with Shoal's distance to the query (smaller is better)."""
        _check_options(kwargs, _SEARCH_OPTIONS, "similarity_search_with_score")
        return self._search(self.embedding.embed_query(query), k, filter, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: Any = None,
                                    **kwargs: Any) -> list[Document]:
        _check_options(kwargs, _SEARCH_OPTIONS, "similarity_search_by_vector")
        return [doc for doc, _ in self._search(embedding, k, filter, **kwargs)]

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4, filter: Any = None,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        _check_options(kwargs, _SEARCH_OPTIONS, "similarity_search_with_score_by_vector")
        return self._search(embedding, k, filter, **kwargs)

    def _search(self, embedding: Sequence[float], k: int, filter: Any, params: dict[str, Any] | None = None
                ) -> list[tuple[Document, float]]:
        result = self.collection.search(np.asarray(embedding, np.float32), k=k, filter=filter, params=params,
                                        include=("metadata", "distance"))
        return [(self._document(hit.id, hit.metadata), hit.distance) for hit in result]

    async def asimilarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search_with_score(self, query: str, k: int = 4, filter: Any = None,
                                            **kwargs: Any) -> list[tuple[Document, float]]:
        _check_options(kwargs, _SEARCH_OPTIONS, "asimilarity_search_with_score")
        embedding = await self.embedding.aembed_query(query)
        return await asyncio.to_thread(self._search, embedding, k, filter, **kwargs)

    async def asimilarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: Any = None,
                                           **kwargs: Any) -> list[Document]:
        _check_options(kwargs, _SEARCH_OPTIONS, "asimilarity_search_by_vector")
        return [doc for doc, _ in await asyncio.to_thread(self._search, embedding, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Distance -> cosine similarity clipped to [0, 1], exact for unit-norm embeddings under every metric
        (squared L2 = 2 - 2·cos, inner product = cos)."""
        metric = self.collection.metric
        if metric == "cosine":
            return lambda d: _clip01(1.0 - d)
        if metric == "l2":
            return lambda d: _clip01(1.0 - d / 2.0)
        return lambda d: _clip01(-d)

    # -------------------------------------------------------------------- MMR
    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: Any = None, **kwargs: Any) -> list[Document]:
        """``k`` documents picked by maximal marginal relevance among the ``fetch_k`` nearest."""
        _check_options(kwargs, _SEARCH_OPTIONS, "max_marginal_relevance_search")
        return self._mmr(self.embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs)

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: Any = None,
                                                **kwargs: Any) -> list[Document]:
        _check_options(kwargs, _SEARCH_OPTIONS, "max_marginal_relevance_search_by_vector")
        return self._mmr(embedding, k, fetch_k, lambda_mult, filter, **kwargs)

    async def amax_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                             lambda_mult: float = 0.5, filter: Any = None,
                                             **kwargs: Any) -> list[Document]:
        _check_options(kwargs, _SEARCH_OPTIONS, "amax_marginal_relevance_search")
        embedding = await self.embedding.aembed_query(query)
        return await asyncio.to_thread(self._mmr, embedding, k, fetch_k, lambda_mult, filter, **kwargs)

    async def amax_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                       lambda_mult: float = 0.5, filter: Any = None,
                                                       **kwargs: Any) -> list[Document]:
        _check_options(kwargs, _SEARCH_OPTIONS, "amax_marginal_relevance_search_by_vector")
        return await asyncio.to_thread(self._mmr, embedding, k, fetch_k, lambda_mult, filter, **kwargs)

    def _mmr(self, embedding: Sequence[float], k: int, fetch_k: int, lambda_mult: float, filter: Any,
             params: dict[str, Any] | None = None) -> list[Document]:
        if not 0.0 <= lambda_mult <= 1.0:
            raise InvalidArgumentError(f"lambda_mult must be in [0, 1] (1: relevance only, 0: diversity only), "
                                       f"got {lambda_mult}")
        query = np.asarray(embedding, np.float32)
        result = self.collection.search(query, k=max(fetch_k, k), filter=filter, params=params,
                                        include=("metadata", "vector"))
        if not len(result):
            return []
        picked = maximal_marginal_relevance(query, list(result.vectors), lambda_mult=lambda_mult,
                                            k=min(k, len(result)))
        return [self._document(result.ids[i], result.metadata[i]) for i in picked]

    # ----------------------------------------------------------- construction
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None,
                   ids: list[str] | None = None, database: Any = None, collection_name: str = "langchain", *,
                   metric: str = "cosine", index: str = "flat", text_key: str = DEFAULT_TEXT_KEY,
                   **kwargs: Any) -> "ShoalVectorStore":
        """Embed ``texts`` and store them in collection ``collection_name`` of ``database`` (a
        ``shoal.Database`` or ``shoal.Client``; default: a new in-memory database). The collection is
        created, with ``metric`` and ``index``, from the first embedding's dimension unless it exists."""
        _check_options(kwargs, (), "from_texts")
        texts = list(texts)
        if not texts:
            raise InvalidArgumentError("from_texts needs at least one text to learn the embedding dimension; to start "
                                       "empty, create the collection yourself and pass it: ShoalVectorStore(embedding, "
                                       "collection)")
        vectors = embedding.embed_documents(texts)
        dim = len(vectors[0])
        if database is None:
            from ..engine import Database

            database = Database()
        collection = database.get_or_create_collection(collection_name, dim, metric=metric, index=index)
        if collection.dim != dim:
            raise DimensionMismatchError(f"collection {collection_name!r} has dimension {collection.dim} but the "
                                         f"embedding gives {dim}; use another collection_name or the embedding it "
                                         "was filled with")
        store = cls(embedding, collection, text_key=text_key)
        store._upsert(texts, vectors, metadatas, ids)
        return store


class ShoalEmbeddings(Embeddings):
    """One of Shoal's embedders (``shoal.rag``: ``"minilm"``, ``"bloom"``, or an instance) as LangChain ``Embeddings``.

    ``options`` go to the named embedder's constructor (``ShoalEmbeddings("bloom", m=1024)``).
    The async methods are LangChain's defaults (the sync ones in an executor).
    """

    def __init__(self, embedder: Any = "minilm", *, batch_size: int = 32, **options: Any) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.embedder = resolve_embedder(embedder, **options)
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        return self.embedder.encode(texts, batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def __repr__(self) -> str:
        return f"ShoalEmbeddings({self.embedder.name!r}, dim={self.dim})"
