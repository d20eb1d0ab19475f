"""Shoal behind the retrieval frameworks most applications already use.

* ``shoal.integrations.langchain``: ``ShoalVectorStore`` (a ``langchain_core`` VectorStore) and
  ``ShoalEmbeddings`` (Shoal's embedders as LangChain ``Embeddings``); extra ``shoal[langchain]``.
* ``shoal.integrations.llama_index``: ``ShoalVectorStore`` (a LlamaIndex ``BasePydanticVectorStore``)
  and ``ShoalEmbedding`` (Shoal's embedders as a LlamaIndex embedding model); extra ``shoal[llama-index]``.

Both stores take an embedded ``shoal.Collection`` or a ``shoal.Client`` collection: they use only the
methods the two share (``upsert``, ``search``, ``get``, ``delete``, ``count``, ``dim``, ``metric``).
Importing this package imports neither framework.
"""
