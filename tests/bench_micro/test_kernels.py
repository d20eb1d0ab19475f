"""pytest-benchmark micro-benchmarks of the hot kernels (``make bench-micro``).

Skipped in the default run (``--benchmark-skip``). Data is built lazily inside
the test bodies so a skipped run builds nothing.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from shoal.engine.backend import get_backend, load_kernels
from shoal.index import make_index
from shoal.index.factory import known_specs
from shoal.index.kernels.topk import METRIC_CODES, distances_from_sims, sq_norms

N, DIM, NQ, K = 20_000, 64, 100, 10


@functools.lru_cache(maxsize=None)
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(50, DIM)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 50, N + NQ)] + rng.normal(size=(N + NQ, DIM))).astype(np.float32)
    return x[:N], x[N:]


@functools.lru_cache(maxsize=None)
def built(spec: str) -> Any:
    x, _ = data()
    index = make_index(spec, DIM, "l2")
    if not index.is_trained:
        index.train(x[:8192])
    index.add(x, np.arange(N))
    return index


def _registered(spec: str) -> bool:
    try:
        make_index(spec, DIM, "l2")
    except Exception:  # the family has not landed
        return False
    return True


def test_distance_block(benchmark: Any) -> None:
    """GEMM + conversion of one (NQ × N) block to squared L2 distances."""
    x, q = data()
    xnorm, qnorm = sq_norms(x), sq_norms(q)
    d = benchmark(lambda: distances_from_sims(q @ x.T, qnorm, xnorm, METRIC_CODES["l2"]))
    assert d.shape == (NQ, N) and (d >= -1e-3).all()


def test_flat_topk(benchmark: Any) -> None:
    """Exact k-NN kernel of the active CPU backend: blocked GEMM + top-k merge."""
    x, q = data()
    kernels = load_kernels("shoal.index.kernels", "flat", get_backend(None))
    labels = np.arange(N, dtype=np.int64)
    xnorm = sq_norms(x)
    _, ids = benchmark(kernels.knn, q, x, xnorm, labels, None, K, "l2")
    assert ids.shape == (NQ, K)


@pytest.mark.parametrize("spec,params", [("PQ32", {"rescore": False}), ("IVF128,PQ32", {"nprobe": 8, "rescore": False}),
                                         ("IVF128,Flat", {"nprobe": 8}), ("SQ8", {"rescore": False})])
def test_quantized_search(benchmark: Any, spec: str, params: dict[str, Any]) -> None:
    """PQ table lookups (ADC), IVF list scans and SQ8 decoding, without exact re-ranking."""
    if not _registered(spec):
        pytest.skip(f"{spec} is not registered yet")
    index = built(spec)
    _, q = data()
    _, ids = benchmark(index.search, q, K, params=params)
    assert (ids >= 0).all()


@pytest.mark.parametrize("ef", [32, 128])
def test_hnsw_search(benchmark: Any, ef: int) -> None:
    if not any(s.lower().startswith("hnsw") for s in known_specs()):
        pytest.skip("HNSW is not registered yet")
    index = built("HNSW32")
    _, q = data()
    _, ids = benchmark(index.search, q, K, params={"ef_search": ef})
    assert (ids >= 0).all()
