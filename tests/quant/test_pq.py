"""Product quantizer: reconstruction error, ADC tables, errors."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import InvalidArgumentError, NotTrainedError
from shoal.quant.pq import ProductQuantizer
from tests.quant.helpers import clustered


@pytest.fixture(scope="module")
def data():
    return clustered(3000, 16, seed=0)


def _relative_mse(pq: ProductQuantizer, x: np.ndarray) -> float:
    rec = pq.decode(pq.encode(x))
    return float(((rec - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_reconstruction_error_bounded_and_falls_with_m(data):
    coarse, fine = ProductQuantizer(16, 2, niter=10), ProductQuantizer(16, 8, niter=10)
    coarse.train(data)
    fine.train(data)
    assert fine.encode(data).shape == (3000, 8) and fine.code_size == 8
    e2, e8 = _relative_mse(coarse, data), _relative_mse(fine, data)
    assert e8 < 0.1
    assert e8 < e2


def test_few_distinct_subvectors_reconstruct_exactly():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 8)).astype(np.float32)
    x = x[rng.integers(0, 100, 600)]  # 100 distinct vectors < 256 centroids per subspace
    pq = ProductQuantizer(8, 4, niter=10)
    pq.train(x)
    np.testing.assert_allclose(pq.decode(pq.encode(x)), x, atol=1e-5)


def test_adc_tables_sum_to_distances_to_reconstruction(data):
    pq = ProductQuantizer(16, 4, niter=5)
    pq.train(data)
    q = data[:5] + 0.1
    codes = pq.encode(data[:50])
    rec = pq.decode(codes)
    sub = np.arange(4)[None, :]
    l2 = pq.l2_tables(q)
    dot = pq.dot_tables(q)
    for i in range(5):
        np.testing.assert_allclose(l2[i][sub, codes].sum(1), ((rec - q[i]) ** 2).sum(1), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(dot[i][sub, codes].sum(1), -(rec @ q[i]), rtol=1e-4, atol=1e-3)


def test_errors(data):
    with pytest.raises(InvalidArgumentError, match="divisor"):
        ProductQuantizer(16, 5)
    with pytest.raises(InvalidArgumentError, match="at least 256"):
        ProductQuantizer(16, 4).train(data[:100])
    with pytest.raises(NotTrainedError):
        ProductQuantizer(16, 4).encode(data[:2])
