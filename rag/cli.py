"""``shoal ingest`` and ``shoal ask``: the RAG pipeline from the command line.

Both work on a durable database (``--data DIR``); ``ask --server host:port``
goes through the gRPC query service instead (the server embeds, retrieves and
generates). Heavy imports stay inside the handlers so ``shoal --help`` is fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_COLLECTION = "rag"
NUMERICS = ("float32", "llama.cpp")  # shoal.rag.models.numerics.NUMERICS, without importing numpy for --help


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", metavar="DIR", help="durable database directory")
    common.add_argument("--collection", default=DEFAULT_COLLECTION, help=f"collection name (default {DEFAULT_COLLECTION})")
    common.add_argument("--embedder", default="minilm", help="embedder: minilm (default) or bloom (model-free)")

    p = sub.add_parser("ingest", parents=[common], help="chunk, embed and store text/Markdown files",
                       description="Ingest files or directories (.txt/.md); re-ingesting a file replaces its chunks.")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata for every document (repeatable)")
    p.add_argument("--chunk-words", type=int, default=100, help="words per chunk (default 100)")
    p.add_argument("--overlap", type=int, default=20, help="words shared by consecutive chunks (default 20)")
    p.add_argument("--scrub-pii", action="store_true", help="replace e-mail addresses and phone numbers before storing")
    p.add_argument("--delete", action="append", default=[], metavar="SOURCE", help="remove a source's chunks (repeatable)")
    p.add_argument("--server", metavar="HOST:PORT", help="ingest into a `shoal serve` server (embedding runs here)")
    p.add_argument("--api-key-file", help="file holding the server's API key (or $SHOAL_API_KEY)")
    p.set_defaults(func=run_ingest)

    a = sub.add_parser("ask", parents=[common], help="answer a question from ingested documents, with citations",
                       description="Retrieve, optionally re-rank, and answer with SmolLM2 from the numbered sources.")
    a.add_argument("question")
    a.add_argument("--server", metavar="HOST:PORT", help="ask a `shoal serve --rag` server instead of a local --data directory")
    a.add_argument("--api-key", default="", help="API key sent to the server (rate limits are per key)")
    a.add_argument("--filter", type=json.loads, default=None, metavar="JSON", help='metadata filter, e.g. \'{"category": "howto"}\'')
    a.add_argument("-k", type=int, default=4, help="sources given to the model (default 4)")
    a.add_argument("--min-score", type=float, default=0.2, help="cosine similarity threshold (default 0.2)")
    a.add_argument("--mmr", action="store_true", help="re-rank for diversity (maximal marginal relevance)")
    a.add_argument("--retrieval", choices=("auto", "dense", "hybrid"), default="auto",
                   help="dense, hybrid (BM25 on the chunk text fused with dense), or auto (default: hybrid when "
                        "the collection indexes its text, as `shoal ingest` creates it)")
    a.add_argument("--max-new-tokens", type=int, default=128, help="generation budget (default 128)")
    a.add_argument("--model", default=None, help="GGUF model path (default SmolLM2-135M-Instruct)")
    a.add_argument("--numerics", choices=NUMERICS, default="float32",
                   help="float32 (default, fast) or llama.cpp (llama.cpp's CPU results bit for bit, slower)")
    a.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    a.set_defaults(func=run_ask)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``shoal serve`` options of the query layer (defaults: ``shoal.rpc.query_service.QueryConfig``)."""
    g = parser.add_argument_group("query layer (RAG)")
    g.add_argument("--rag", action="store_true", help="also serve shoal.v1.Query (Ask with citations, Embed)")
    g.add_argument("--rag-collection", help="default collection of Ask (default rag)")
    g.add_argument("--rag-embedder", help="embedder: minilm (default) or bloom")
    g.add_argument("--rag-model", help="GGUF model path (default SmolLM2-135M-Instruct)")
    g.add_argument("--rag-numerics", choices=NUMERICS, help="float32 (default) or llama.cpp (bit-exact llama.cpp, slower)")
    g.add_argument("--rag-max-new-tokens", type=int, help="default generation budget (default 128)")
    g.add_argument("--rag-rate", type=float, help="Ask/Embed calls per second per API key (default 5)")
    g.add_argument("--rag-burst", type=float, help="burst size of the per-key rate limit (default 10)")
    g.add_argument("--rag-cache-threshold", type=float, help="semantic cache cosine threshold (default 0.95)")


def _parse_meta(items: list[str]) -> dict[str, Any]:
    from ..engine.errors import InvalidArgumentError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"--meta takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _open(args: argparse.Namespace, create: bool):
    """The database and collection named by --data/--collection (created on ingest; ``ask`` opens the
    directory read-only, so it works beside a running ``shoal serve``, and a missing one is an error),
    or, for ingest, a server's (``--server``)."""
    import shoal
    from ..engine.errors import InvalidArgumentError
    from .embedders import load_embedder

    server = getattr(args, "server", None) if create else None
    if not args.data and not server:
        raise InvalidArgumentError("give --data DIR (a durable database directory) or --server HOST:PORT")
    if args.data and server:
        raise InvalidArgumentError("give --data or --server, not both")
    import shoal.rag  # noqa: F401  (registers the bloom embedder)

    embedder = load_embedder(args.embedder)
    if server:
        from ..engine.cli import api_key

        db = shoal.Client(server, api_key=api_key(args))
    else:
        db = shoal.Database(args.data, read_only=not create)
    if create:
        col = db.get_or_create_collection(args.collection, dim=embedder.dim, metric="cosine", index="flat",
                                          text_fields=["text"])
    else:
        col = db.get_collection(args.collection)
    return db, col, embedder


def run_ingest(args: argparse.Namespace) -> int:
    from ..engine.errors import InvalidArgumentError
    from .pipeline import RagPipeline, load_documents

    if not args.paths and not args.delete:
        raise InvalidArgumentError("nothing to do: give PATHs to ingest and/or --delete SOURCE")
    docs = load_documents(args.paths, _parse_meta(args.meta))
    db, col, embedder = _open(args, create=True)
    with db:
        rag = RagPipeline(col, embedder, chunk_words=args.chunk_words, overlap_words=args.overlap, scrub=args.scrub_pii)
        for source in args.delete:
            print(f"deleted {rag.delete_source(source)} chunks of {source}")
        if docs:
            r = rag.ingest(docs)
            print(f"ingested {r.documents} documents as {r.chunks} chunks into {args.collection!r} "
                  f"({r.removed} stale chunks removed, {r.emails_scrubbed} e-mails and {r.phones_scrubbed} phone numbers "
                  f"scrubbed) in {r.seconds:.2f}s; collection now has {col.count()} chunks")
    return 0


def run_ask(args: argparse.Namespace) -> int:
    if args.server:
        from ..rpc.query_client import ask_remote

        return ask_remote(args)
    from .generation import SamplingParams, load_generator
    from .pipeline import RagPipeline

    db, col, embedder = _open(args, create=False)
    with db:
        generator = _LazyGenerator(lambda: load_generator(args.model, numerics=args.numerics))
        try:
            rag = RagPipeline(col, embedder, generator, sampling=SamplingParams(max_new_tokens=args.max_new_tokens),
                              retrieval=args.retrieval)
            return print_stream(rag.ask_stream(args.question, args.k, filter=args.filter,
                                               min_score=args.min_score, use_mmr=args.mmr), args.stream)
        finally:
            generator.close()


class _LazyGenerator:
    """Loads the model on the first ``stream`` call: a question with no source above the threshold never needs it."""

    def __init__(self, load: Any) -> None:
        self._load, self._generator = load, None

    def stream(self, messages: Any, params: Any = None) -> Any:
        if self._generator is None:
            self._generator = self._load()
        return self._generator.stream(messages, params)

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()


def print_stream(events: Any, streamed: bool) -> int:
    """Consume an ask stream (text pieces, then the Answer): echo pieces if streaming, then print
    the answer; exit code 1 when the stream ended without an answer. Shared by local and remote ask."""
    from .pipeline import Answer

    answer = None
    for event in events:
        if isinstance(event, Answer):
            answer = event
        elif streamed:
            print(event, end="", flush=True)
    if answer is None:
        return 1
    print_answer(answer, streamed=streamed)
    return 0


def print_answer(answer: Any, streamed: bool, out: Any = None) -> None:
    """The answer (unless already streamed), its citations and timings."""
    out = out or sys.stdout
    text = answer.format()
    if streamed:
        text = text[len(answer.text.strip()):].lstrip("\n")
        print(file=out)
    print(text, file=out)
    t = answer.timings
    print(f"({', '.join(f'{k} {v:.0f}' for k, v in t.items() if k.endswith('_ms'))})", file=out)
