"""Retrieval-augmented answering: embedders (MiniLM, model-free Bloom), chunking, PII
scrubbing, the ingest/ask pipeline with citations, a semantic answer cache and
per-key rate limiting for the query service.

    from shoal.rag import RagPipeline, load_embedder
    rag = RagPipeline(db.get_or_create_collection("docs", dim=384), load_embedder("minilm"), generator)
    rag.ingest(load_documents(["notes/"]))
    print(rag.ask("How do I ...?").format())
"""
from .embedders import Embedder, available_embedders, load_embedder, register_embedder
from .bloom import BloomEmbedder, jaccard
from .cache import SemanticCache
from .chunking import Chunk, chunk_text, split_sentences
from .pii import scrub_pii
from .pipeline import Answer, Citation, Document, IngestReport, RagPipeline, build_messages, load_documents, mmr
from .ratelimit import RateLimiter, TokenBucket

__all__ = [
    "Answer", "BloomEmbedder", "Chunk", "Citation", "Document", "Embedder", "IngestReport", "RagPipeline",
    "RateLimiter", "SemanticCache", "TokenBucket", "available_embedders", "build_messages", "chunk_text", "jaccard",
    "load_documents", "load_embedder", "mmr", "register_embedder", "scrub_pii", "split_sentences",
]
