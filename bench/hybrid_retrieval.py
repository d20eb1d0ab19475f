"""Hybrid retrieval: quality (dense vs BM25 vs fused) and BM25 speed against bm25s.

Labelled set (``docstring_pairs``), built offline from what is installed: every
public function, class and method with a docstring in the standard library's
modules and in numpy, scipy and scikit-learn with all their importable
submodules (``module_names``; objects reached twice are kept once). A docstring's *summary* (its first paragraph, up to the first ". ") is
the query; the *rest* of the docstring, without the summary, is the document,
so a query never appears verbatim in its document. Pairs whose summary or rest
is shared by another object are dropped (ambiguous labels), as are rests under
15 words. Each query has exactly one relevant document, its own.

Quality (``--docs`` documents, ``--queries`` of their summaries, documents cut
to their first ``--doc-words`` words for both retrievers): MRR@10 and recall@10
of dense only (all-MiniLM-L6-v2, or ``--dense glove``: mean GloVe word vectors; exact cosine), BM25 only
and hybrid
(``Collection.search(q, text=...)`` with RRF, DBSF and weighted fusion).
Embeddings are cached on disk by content hash.

Speed (every distinct docstring paragraph of 5+ words as a document, ~41k here;
the first ``--speed-queries`` summaries as queries): BM25 indexing rows/s and query QPS of the
collection path (``upsert`` + ``flush``; ``search(text=[...])`` in one batch and one
query per call) against bm25s (``method="lucene"``, same k1/b, tokens from the same
tokenizer; numpy and numba backends; batch on all threads and one tokenised query per
call on one thread, as Shoal runs a one-query call), same process, same data, same
threads, query passes interleaved, best of ``--repeat`` rounds, also as CPU time per query
(``cpu_ratio_*``: the peer's CPU per query over ours, > 1 is faster). ``--speed-corpus sources``
takes every docstring paragraph of the ``.py`` files of the standard library and
site-packages instead (~265k, read with ``ast``).
Run: ``python -m shoal.bench.hybrid_retrieval [--json out.json]``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import io
import os
import re
import time
import warnings
from typing import Any

import numpy as np

from .metrics import best_seconds, emit_json

#: Packages walked (with every importable submodule) besides the standard library's top-level modules.
PACKAGES = ("numpy", "scipy", "sklearn")
#: Modules never imported: they open windows, print on import, or are test suites and tooling.
_SKIP = re.compile(r"(^|\.)(_[^.]*|tests?|testing|idlelib|tkinter|turtle\w*|antigravity|this|lib2to3|ensurepip|venv|"
                   r"pydoc_data|__main__|msilib|winreg|winsound|_msi|distutils|setuptools|pip|conftest|crypt|"
                   r"spwd|nis|ossaudiodev|curses|readline|dbm|xxlimited\w*)($|\.)")


def module_names() -> list[str]:
    """The standard library's public modules and those of ``PACKAGES``, with their submodules."""
    import pkgutil
    import sys

    names = {m for m in sys.stdlib_module_names if not _SKIP.search(m)} | set(PACKAGES)
    out = set()
    for name in sorted(names):
        out.add(name)
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        if hasattr(mod, "__path__"):
            for info in pkgutil.walk_packages(mod.__path__, name + ".", onerror=lambda _: None):
                if not _SKIP.search(info.name):
                    out.add(info.name)
    return sorted(out)


_SUMMARY_END = re.compile(r"\.(\s|$)")


def _split(doc: str) -> tuple[str, str] | None:
    """(summary, rest) of a cleaned docstring, or None when either part is too thin."""
    first, _, rest = doc.strip().partition("\n\n")
    first = " ".join(first.split())
    m = _SUMMARY_END.search(first)
    summary, tail = (first[: m.start() + 1], first[m.end():]) if m else (first, "")
    rest = " ".join((tail + " " + rest).split())
    if len(summary.split()) < 4 or len(rest.split()) < 15:
        return None
    return summary, rest


def docstrings() -> dict[str, str]:
    """Qualified name -> cleaned docstring of every public function, class and method reached."""
    seen: set[int] = set()
    docs: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        doc = inspect.getdoc(obj) if not isinstance(obj, type) or obj.__doc__ else None
        if doc:
            docs[name] = doc

    warnings.simplefilter("ignore")
    for mod_name in module_names():
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                mod = importlib.import_module(mod_name)
        except Exception:  # a module that needs an absent optional dependency, or a platform it is not on
            continue
        for attr in sorted(set(getattr(mod, "__all__", None) or dir(mod))):
            if attr.startswith("_"):
                continue
            try:
                obj = getattr(mod, attr, None)
            except ImportError:  # lazily imported experimental names (scikit-learn)
                continue
            if not (inspect.isroutine(obj) or inspect.isclass(obj)):
                continue
            visit(f"{mod_name}.{attr}", obj)
            if inspect.isclass(obj):
                for meth, member in sorted(vars(obj).items()):
                    if not meth.startswith("_") and inspect.isroutine(member):
                        visit(f"{mod_name}.{attr}.{meth}", member)
    return docs


def docstring_pairs(docs: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(qualified name, summary, rest)`` of every usable docstring (see the module docstring), sorted by name."""
    pairs = {name: split for name, doc in docs.items() if (split := _split(doc)) is not None}
    summaries: dict[str, int] = {}
    rests: dict[str, int] = {}
    rests = {}
    for s, r in pairs.values():
        summaries[s] = summaries.get(s, 0) + 1
        rests[r] = rests.get(r, 0) + 1
    return sorted((n, s, r) for n, (s, r) in pairs.items() if summaries[s] == 1 and rests[r] == 1)


def _embed_cached(texts: list[str], cache_dir: str) -> np.ndarray:
    from ..rag.embedders import load_embedder

    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    path = os.path.join(cache_dir, f"minilm-{key}.npy")
    if os.path.exists(path):
        return np.load(path)
    x = np.ascontiguousarray(load_embedder("minilm").encode(texts, batch_size=64), dtype=np.float32)
    os.makedirs(cache_dir, exist_ok=True)
    np.save(path, x)
    return x


def _embed_glove(texts: list[str]) -> np.ndarray:
    """Mean of the GloVe 6B 50-d vectors of a text's in-vocabulary words (a cheap pretrained dense
    retriever, for machines where MiniLM in numpy is too slow), L2-normalised."""
    from .multivector_bench import _WORD, glove_vocab

    vectors, vocab = glove_vocab()
    out = np.zeros((len(texts), vectors.shape[1]), np.float32)
    for i, text in enumerate(texts):
        rows = [vocab[w] for w in _WORD.findall(text.lower()) if w in vocab]
        if rows:
            out[i] = vectors[rows].mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def _rank_metrics(results: list[Any], want: list[int], k: int) -> dict[str, float]:
    rr, hit = [], []
    for res, target in zip(results, want):
        ids = list(res.ids[:k])
        rank = ids.index(target) + 1 if target in ids else None
        rr.append(1.0 / rank if rank else 0.0)
        hit.append(rank is not None)
    return {f"mrr@{k}": float(np.mean(rr)), f"recall@{k}": float(np.mean(hit))}


def quality(pairs: list[tuple[str, str, str]], n_docs: int, n_queries: int, doc_words: int, k: int, seed: int,
            cache_dir: str, dense: str = "minilm") -> dict[str, Any]:
    from ..engine.database import Database

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(pairs))[:n_docs])
    docs = [" ".join(pairs[i][2].split()[:doc_words]) for i in pick.tolist()]
    qrows = np.sort(rng.permutation(pick.size)[:n_queries])
    queries = [pairs[pick[i]][1] for i in qrows.tolist()]
    t0 = time.perf_counter()
    embed = (lambda texts: _embed_cached(texts, cache_dir)) if dense == "minilm" else _embed_glove
    dvec, qvec = embed(docs), embed(queries)
    embed_s = time.perf_counter() - t0
    col = Database().create_collection("q", dvec.shape[1], "cosine", "flat", text_fields=["text"])
    col.upsert(list(range(len(docs))), dvec, [{"text": d} for d in docs])
    want = qrows.tolist()
    out: dict[str, Any] = {"docs": len(docs), "queries": len(queries), "dense_model": dense,
                           "embed_seconds": round(embed_s, 1)}
    out["dense"] = _rank_metrics(col.search(qvec, k=k, include=()), want, k)
    out["bm25"] = _rank_metrics(col.search(text=queries, k=k, include=()), want, k)
    for fusion in ("rrf", "dbsf", "weighted"):
        out[f"hybrid-{fusion}"] = _rank_metrics(col.search(qvec, k=k, text=queries, fusion=fusion, include=()),
                                                want, k)
    return out


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    """Best seconds of ``repeat`` runs (``bench.metrics.best_seconds``) and the last run's result."""
    out: list[Any] = []
    return best_seconds(lambda: out.append(fn()), repeat), out[-1]


def paragraphs(docs: dict[str, str]) -> list[str]:
    """The speed corpus: every distinct docstring paragraph of 5+ words, whitespace-normalised, sorted."""
    return sorted({" ".join(p.split()) for doc in docs.values() for p in doc.split("\n\n") if len(p.split()) >= 5})


def source_paragraphs() -> list[str]:
    """The large speed corpus: every distinct paragraph of 5+ words of every module, class and function
    docstring in the ``.py`` files of the standard library and site-packages, read with ``ast`` (nothing
    imported), whitespace-normalised, sorted; ~265k with this repository's ``make install``."""
    import ast
    import sysconfig

    paths = sysconfig.get_paths()
    out: set[str] = set()
    for root in sorted({paths["stdlib"], paths["purelib"], paths["platlib"]}):
        for folder, subdirs, files in os.walk(root):
            subdirs.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                try:
                    with open(os.path.join(folder, name), encoding="utf-8") as fh:
                        tree = ast.parse(fh.read())
                except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                        out.update(" ".join(p.split()) for p in (ast.get_docstring(node) or "").split("\n\n")
                                   if len(p.split()) >= 5)
    return sorted(out)


def speed(docs: list[str], queries: list[str], k: int, repeat: int, k1: float, b: float,
          threads: int) -> dict[str, Any]:
    """Indexing and query speed, Shoal's collection path against bm25s; query passes interleaved
    (Shoal, bm25s numba, bm25s numpy, each round), best of ``repeat`` rounds."""
    import bm25s
    import numba

    from ..engine.collection import Collection
    from ..index.tokenizer import Tokenizer

    numba.set_num_threads(threads)
    tok = Tokenizer()
    out: dict[str, Any] = {"docs": len(docs), "queries": len(queries), "threads": threads}

    def ours_index() -> Any:
        col = Collection("bm", 1, "l2", text_fields=["text"], text_options={"k1": k1, "b": b},
                         optimizer={"background": False})
        for s in range(0, len(docs), 5000):
            chunk = docs[s:s + 5000]
            col.upsert(list(range(s, s + len(chunk))), np.zeros((len(chunk), 1)), [{"text": d} for d in chunk])
        col.flush()
        return col

    t_ours, col = _best(ours_index, repeat)
    out["shoal_index_rows_per_s"] = len(docs) / t_ours
    out["shoal_segments"] = col.describe()["segments"]

    def bm25s_index(backend: str) -> Any:
        r = bm25s.BM25(method="lucene", k1=k1, b=b, backend=backend)
        r.index([tok(d) for d in docs], show_progress=False)
        return r

    t_theirs, peer = _best(lambda: bm25s_index("numpy"), repeat)
    out["bm25s_index_rows_per_s"] = len(docs) / t_theirs
    peers = {"numpy": peer, "numba": bm25s_index("numba")}
    vocab = peer.vocab_dict

    def peer_tokens(q: str) -> list[str]:
        # bm25s drops query tokens its vocabulary lacks only for its own Tokenized input; filter likewise
        return [t for t in tok(q) if t in vocab] or [next(iter(vocab))]

    few = queries[: max(1, len(queries) // 4)]
    passes = {
        "shoal_qps_batch": (len(queries), lambda: col.search(text=queries, k=k, include=())),
        "shoal_qps_one_per_call": (len(few), lambda: [col.search(text=q, k=k, include=()) for q in few]),
    }
    for name, r in peers.items():
        passes[f"bm25s_{name}_qps"] = (len(queries), lambda r=r: r.retrieve(
            [peer_tokens(q) for q in queries], k=k, n_threads=threads, show_progress=False, return_as="tuple"))
        # one call per query, tokenising it (Shoal's call tokenises too), on one thread as Shoal does
        passes[f"bm25s_{name}_qps_one_per_call"] = (len(few), lambda r=r: [r.retrieve(
            [peer_tokens(q)], k=k, n_threads=1, show_progress=False, return_as="tuple") for q in few])
    for n, fn in passes.values():  # compile / warm every path
        fn()
    best = {name: np.inf for name in passes}
    cpu = {name: np.inf for name in passes}
    for _ in range(repeat):
        for name, (n, fn) in passes.items():
            c0 = time.process_time()
            best[name] = min(best[name], best_seconds(fn, 1))
            cpu[name] = min(cpu[name], time.process_time() - c0)
    out.update({name: n / best[name] for name, (n, _) in passes.items()})
    # CPU time of the process (every thread) per query, best round: steadier than QPS on a shared machine
    out.update({f"{name}_cpu_us_per_query": 1e6 * cpu[name] / n for name, (n, _) in passes.items()})
    # agreement: the same top-k scores (ids may differ only among tied scores; bm25s scores in float32)
    ours = col.search(text=queries, k=k, include=())
    theirs = passes["bm25s_numpy_qps"][1]()
    same = [np.allclose(o.scores, t, rtol=1e-4) for o, t in zip(ours, theirs[1]) if len(o) == k]
    out["top_k_scores_equal"] = float(np.mean(same)) if same else None
    for mode, suffix in (("batch", ""), ("one_per_call", "_one_per_call")):
        for name in peers:
            out[f"qps_ratio_{mode}_vs_bm25s_{name}"] = out[f"shoal_qps_{mode}"] / out[f"bm25s_{name}_qps{suffix}"]
            out[f"cpu_ratio_{mode}_vs_bm25s_{name}"] = (out[f"bm25s_{name}_qps{suffix}_cpu_us_per_query"]
                                                        / out[f"shoal_qps_{mode}_cpu_us_per_query"])
    out["index_ratio_vs_bm25s"] = out["shoal_index_rows_per_s"] / out["bm25s_index_rows_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1500, help="documents of the quality set (default 1500)")
    p.add_argument("--queries", type=int, default=300, help="queries of the quality set (default 300)")
    p.add_argument("--doc-words", type=int, default=50,
                   help="words per document in the quality set (default 50; MiniLM in numpy costs ~9 GFLOP "
                        "per 200-token text, so longer documents make the embedding the run's bottleneck)")
    p.add_argument("--speed-queries", type=int, default=2000, help="queries of the speed run")
    p.add_argument("--speed-corpus", choices=("docstrings", "sources"), default="docstrings",
                   help="documents of the speed run: the paragraphs of the docstrings reached by import (~41k), "
                        "or those of every .py file of the standard library and site-packages (~265k)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--dense", choices=("minilm", "glove"), default="minilm",
                   help="dense retriever of the quality run: all-MiniLM-L6-v2, or mean GloVe word vectors")
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~/.cache"), "shoal", "bench"))
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    docs = docstrings()
    pairs = docstring_pairs(docs)
    report: dict[str, Any] = {"docstrings": len(docs), "pairs": len(pairs),
                              "build_seconds": round(time.perf_counter() - t0, 1)}
    if not args.skip_quality:
        report["quality"] = quality(pairs, args.docs, args.queries, args.doc_words, args.k, args.seed, args.cache_dir,
                                    args.dense)
    if not args.skip_speed:
        corpus = paragraphs(docs) if args.speed_corpus == "docstrings" else source_paragraphs()
        report["speed"] = speed(corpus, [s for _, s, _ in pairs][: args.speed_queries], args.k, args.repeat,
                                1.2, 0.75, args.threads)
    emit_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
