"""Scalar quantizers: error bounds, trimming, persistence of parameters."""
from __future__ import annotations

import numpy as np
import pytest

from shoal.engine.errors import InvalidArgumentError, NotTrainedError
from shoal.quant.sq import ScalarQuantizer
from tests.quant.helpers import clustered


def test_sq8_error_at_most_half_a_step():
    x = clustered(2000, 16, seed=0)
    sq = ScalarQuantizer(16, "sq8")
    sq.train(x)
    codes = sq.encode(x)
    assert codes.dtype == np.uint8 and sq.code_size == 16
    err = np.abs(sq.decode(codes) - x)
    assert (err <= sq.scale[None, :] / 2 + 1e-5).all()


def test_fp16_relative_error():
    x = clustered(500, 8, seed=1)
    sq = ScalarQuantizer(8, "fp16")
    assert sq.is_trained and sq.code_size == 16
    np.testing.assert_allclose(sq.decode(sq.encode(x)), x, rtol=1e-3, atol=1e-3)


def test_trim_spends_levels_on_the_bulk():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 4)).astype(np.float32)
    x[0] = 1000.0  # one outlier
    plain, trimmed = ScalarQuantizer(4, "sq8"), ScalarQuantizer(4, "sq8", trim=0.001)
    plain.train(x)
    trimmed.train(x)
    bulk = x[1:]
    err_plain = np.abs(plain.decode(plain.encode(bulk)) - bulk).mean()
    err_trim = np.abs(trimmed.decode(trimmed.encode(bulk)) - bulk).mean()
    assert err_trim < err_plain / 10


def test_constant_dimension_is_exact():
    x = np.ones((10, 3), np.float32)
    sq = ScalarQuantizer(3)
    sq.train(x)
    np.testing.assert_array_equal(sq.decode(sq.encode(x)), x)


def test_errors():
    with pytest.raises(InvalidArgumentError, match="sq8, fp16"):
        ScalarQuantizer(4, "sq4")
    with pytest.raises(InvalidArgumentError):
        ScalarQuantizer(4, trim=0.7)
    with pytest.raises(NotTrainedError):
        ScalarQuantizer(4).encode(np.zeros((1, 4), np.float32))
