"""Our dequantisers (kernels/dequant_numpy.py) against gguf-py's, on random blocks of every type
and on the tensors of a real Q4_K_M file (Gemma 3 270M, when its package is installed)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize as gguf_dequantize

from shoal.engine.errors import FormatVersionError, NotFoundError
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


@pytest.fixture(scope="module")
def gemma_reader():  # noqa: ANN201
    import gguf

    from shoal.rag.generation.generator import gemma3_gguf_path

    try:
        return gguf.GGUFReader(str(gemma3_gguf_path()))
    except NotFoundError as exc:
        pytest.skip(str(exc))


def test_real_q4_k_m_tensors_equal_gguf(gemma_reader) -> None:  # noqa: ANN001
    """Every block type of a downloaded Q4_K_M file (Q4_K, Q6_K, Q5_0, Q8_0), 64 rows of one tensor each."""
    seen = set()
    for t in gemma_reader.tensors:
        qtype = int(t.tensor_type)
        if qtype in seen or qtype not in dequant_numpy.DEQUANTIZERS or len(t.shape) != 2:
            continue
        seen.add(qtype)
        rows = np.asarray(t.data)[:64]
        cols = int(t.shape[0])
        ref = gguf_dequantize(rows, t.tensor_type).reshape(len(rows), cols)
        np.testing.assert_allclose(dequant_numpy.dequantize(rows, qtype, (len(rows), cols)), ref, rtol=1e-6,
                                   atol=1e-6 * np.abs(ref).max(), err_msg=t.name)
    assert seen >= {int(T.Q4_K), int(T.Q6_K), int(T.Q5_0), int(T.Q8_0)}
