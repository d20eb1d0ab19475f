"""Our dequantisers (kernels/dequant_numpy.py) against gguf-py's on random blocks of every type
(a real Q4_K_M file's tensors are checked in test_gemma.py, which loads that file anyway)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize as gguf_dequantize

from shoal.engine.errors import FormatVersionError
from shoal.rag.kernels import dequant_numpy
from shoal.rag.models.gguf_model import QuantizedTensor

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
llama_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_tiny)
random_blocks = llama_tiny.random_gguf_blocks
QTYPES = [T.Q4_1, T.Q5_0, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantisers_equal_gguf(qtype) -> None:  # noqa: ANN001
    rows, cols = 6, 512
    raw = random_blocks(int(qtype), rows, cols, seed=int(qtype))
    ref = gguf_dequantize(raw, qtype).reshape(rows, cols)
    got = dequant_numpy.dequantize(raw, int(qtype), (rows, cols))
    assert got.dtype == np.float32 and got.shape == (rows, cols)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    t = QuantizedTensor("w", int(qtype), raw, (rows, cols))
    np.testing.assert_array_equal(t.dequantize(), got)


def test_shape_errors() -> None:
    raw = random_blocks(int(T.Q4_K), 2, 256, 0)
    with pytest.raises(FormatVersionError):
        dequant_numpy.dequantize(raw, int(T.Q4_K), (2, 300))  # not whole super-blocks
    with pytest.raises(FormatVersionError):
        dequant_numpy.dequantize(raw, int(T.Q4_K), (3, 256))  # more rows than blocks
    with pytest.raises(FormatVersionError):
        dequant_numpy.dequantize(raw, 99, (2, 256))
