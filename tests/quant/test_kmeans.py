"""k-means: quality against scikit-learn, empty-cluster repair, balancing, backends."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans

from shoal.engine.errors import InvalidArgumentError, NotTrainedError
from shoal.quant.kmeans import KMeans, balanced_assign
from tests.quant.helpers import clustered


def test_inertia_within_5_percent_of_sklearn():
    x = clustered(3000, 8, seed=1, centers=24)
    ours = min(KMeans(16, seed=s, niter=50).fit(x).inertia for s in range(3))
    ref = min(SKKMeans(16, n_init=1, random_state=s).fit(x).inertia_ for s in range(3))
    assert ours <= 1.05 * ref


def test_inertia_is_sum_of_assigned_distances():
    x = clustered(2000, 6, seed=2)
    km = KMeans(10, seed=0).fit(x)
    _, d = km.assign(x)
    assert km.inertia == pytest.approx(float(d.sum(dtype=np.float64)), rel=1e-4)
    ref = ((x[:, None, :] - km.centroids[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(d, ref, rtol=1e-3, atol=1e-3)


def test_empty_clusters_repaired():
    # 12 distinct points repeated: a bad init leaves clusters empty unless they are relocated
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(12, 4)).astype(np.float32) * 10
    x = pts[rng.integers(0, 12, 1200)]
    km = KMeans(12, seed=3, init="random").fit(x)
    assert np.unique(km.predict(x)).size == 12
    assert km.inertia <= 1e-5 * float(((x - x.mean(0)) ** 2).sum())  # zero up to float rounding


def test_balanced_caps_cluster_sizes_without_dropping_points():
    rng = np.random.default_rng(5)
    # one huge blob and a few small ones: plain k-means gives very uneven clusters
    x = np.concatenate([rng.normal(size=(1800, 4)), rng.normal(size=(200, 4)) + 20]).astype(np.float32)
    plain = KMeans(10, seed=0).fit(x)
    bal = KMeans(10, seed=0, balanced=True, balance_factor=1.2).fit(x)
    labels, _ = balanced_assign(bal._k, x, bal.centroids, 1.2)
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == x.shape[0]
    assert counts.max() <= int(np.ceil(1.2 * x.shape[0] / 10))
    assert np.bincount(plain.predict(x), minlength=10).max() > counts.max()


def test_sampling_and_early_stop():
    x = clustered(6000, 4, seed=4, centers=4)
    km = KMeans(4, seed=0, niter=100, tol=1e-3, max_points_per_centroid=256).fit(x)
    assert km.n_iter < 100
    assert km.centroids.shape == (4, 4)


def test_numpy_and_numba_kernels_agree():
    x = clustered(1500, 8, seed=6)
    a = KMeans(8, seed=1, backend="numba").fit(x)
    b = KMeans(8, seed=1, backend="numpy").fit(x)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-3)


def test_errors():
    with pytest.raises(InvalidArgumentError, match="at least 10"):
        KMeans(10).fit(np.zeros((5, 2), np.float32))
    with pytest.raises(InvalidArgumentError, match="init"):
        KMeans(2, init="magic")
    with pytest.raises(InvalidArgumentError):
        KMeans(0)
    with pytest.raises(NotTrainedError):
        KMeans(2).assign(np.zeros((1, 2), np.float32))


def test_balanced_assign_respects_existing_counts():
    x = clustered(1000, 4, seed=8, centers=2)
    km = KMeans(4, seed=0).fit(x)
    base = np.array([500, 0, 0, 0])
    labels, _ = balanced_assign(km._k, x, km.centroids, 1.0, base_counts=base)
    counts = np.bincount(labels, minlength=4)
    assert counts.sum() == 1000 and counts[0] == 0  # cluster 0 is already over the cap of 375
    assert counts[1:].max() <= 375
