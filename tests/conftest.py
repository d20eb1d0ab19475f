"""Shared fixtures. Keeps Numba's cache in a writable place for every test process."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba_cache"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def brute_force(queries: np.ndarray, data: np.ndarray, k: int, metric: str,
                labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The plain numpy reference: float64 distances, stable argsort (ties -> lower id)."""
    from shoal.engine.metrics import reference_distances

    labels = np.arange(data.shape[0]) if labels is None else labels
    d = reference_distances(queries, data, metric)
    order = np.lexsort((np.broadcast_to(labels, d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), labels[order]


def assert_knn_equal(d: np.ndarray, i: np.ndarray, ref_d: np.ndarray, ref_i: np.ndarray,
                     atol: float = 1e-4) -> None:
    """Distances equal to tolerance; ids equal up to ties.

    Positions whose reference distances tie (within tolerance) form groups; inside
    a group any order is fine, so the id *sets* must match, except for the group
    that reaches position k-1, which may hold any of the tied rows beyond k.
    """
    k = ref_d.shape[1]
    np.testing.assert_allclose(d[:, :k], ref_d, atol=atol, rtol=1e-4)
    for row in range(ref_i.shape[0]):
        start = 0
        while start < k:
            tol = 2 * atol + 2e-4 * abs(ref_d[row, start])
            end = start + 1
            while end < k and abs(ref_d[row, end] - ref_d[row, start]) <= tol:
                end += 1
            if end < k:
                assert set(i[row, start:end].tolist()) == set(ref_i[row, start:end].tolist()), (row, start, end)
            start = end


def wait_for(condition, timeout: float = 20.0, interval: float = 0.01, what: str = "condition") -> None:  # noqa: ANN001
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds (a deadline, not a sleep
    that hopes background work is done: fast when the machine is, patient when it is loaded)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
