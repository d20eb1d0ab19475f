"""The Numba kernels over GGUF blocks (Q4_1, Q8_0, and Q5_0 / Q4_K / Q6_K converted) against dequantise-then-multiply,
and the Numba attention kernels against the plain numpy ones."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from shoal.rag.kernels import attention_numba, attention_numpy, qlinear_numba
from shoal.rag.kernels.qlinear_numpy import DenseLinear
from shoal.rag.models.gguf_model import QuantizedTensor

Q4_1, Q8_0 = GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0
Q5_0, Q4_K, Q6_K = GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
llama_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llama_tiny)


def qtensor(rows: int, cols: int, qtype: GGMLQuantizationType, seed: int) -> QuantizedTensor:
    if qtype in (Q4_K, Q6_K):  # gguf-py has no K-quant quantiser: random blocks
        return QuantizedTensor(f"w{seed}", int(qtype), llama_tiny.random_gguf_blocks(int(qtype), rows, cols, seed), (rows, cols))
    w = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    return QuantizedTensor(f"w{seed}", int(qtype), quantize(w, qtype), (rows, cols))


@pytest.mark.parametrize("qtype", [Q4_1, Q8_0, Q5_0, Q4_K, Q6_K])
@pytest.mark.parametrize("rows", [8, 13, 40])  # whole groups of 8, a tail, several groups
@pytest.mark.parametrize("tokens", [1, 3, qlinear_numba.GEMM_TOKENS + 2])  # decode, verification, prefill (GEMM)
def test_block_linear_equals_dequantised_matmul(qtype, rows, tokens) -> None:  # noqa: ANN001
    w = qtensor(rows, 256 if qtype in (Q4_K, Q6_K) else 96, qtype, seed=rows)
    lin = qlinear_numba.make_linear([w], np)
    assert isinstance(lin, qlinear_numba.BlockLinear)
    x = np.random.default_rng(1).standard_normal((tokens, w.shape[1])).astype(np.float32)
    ref = x.astype(np.float64) @ w.dequantize().astype(np.float64).T
    got = lin(x)
    assert got.shape == (tokens, rows) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
    ids = np.array([0, rows - 1, rows // 2])
    np.testing.assert_array_equal(lin.rows(ids), w.dequantize()[ids])


def test_token_rows_do_not_depend_on_the_batch() -> None:
    """Verification of a draft scores several tokens at once; each row must equal its one-token product bit for bit."""
    lin = qlinear_numba.make_linear([qtensor(24, 64, Q4_1, 0), qtensor(16, 64, Q4_1, 1)], np)
    x = np.random.default_rng(2).standard_normal((5, 64)).astype(np.float32)
    together = lin(x)
    for t in range(5):
        np.testing.assert_array_equal(lin(x[t : t + 1])[0], together[t])


def test_fused_mixed_types_keep_row_order() -> None:
    parts = [qtensor(16, 64, Q4_1, 3), qtensor(8, 64, Q8_0, 4), qtensor(8, 64, Q4_1, 5)]
    lin = qlinear_numba.make_linear(parts, np)
    assert [p.qtype for p in lin.parts] == [int(Q4_1), int(Q8_0), int(Q4_1)]
    dense = np.concatenate([p.dequantize() for p in parts])
    x = np.random.default_rng(3).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(lin(x), x @ dense.T, rtol=1e-5, atol=1e-4)
    ids = np.array([0, 17, 30, 5])
    np.testing.assert_array_equal(lin.rows(ids), dense[ids])
    assert lin.nbytes < dense.nbytes / 3


def test_other_weights_stay_dense() -> None:
    """Float matrices (random test models) and mixed float/quantised fusions keep the dense path."""
    assert isinstance(qlinear_numba.make_linear([np.ones((8, 64), np.float32)], np), DenseLinear)
    assert isinstance(qlinear_numba.make_linear([qtensor(8, 64, Q4_1, 0), np.ones((8, 64), np.float32)], np), DenseLinear)


# -- attention ---------------------------------------------------------------

HEADS, KV, HD = 6, 2, 16


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    return rng.standard_normal((400, KV, HD)).astype(np.float32), rng.standard_normal((400, KV, HD)).astype(np.float32)


def test_decode_kernel_equals_plain(pool) -> None:  # noqa: ANN001
    kc, vc = pool
    rng = np.random.default_rng(5)
    slot_lists = [rng.permutation(400)[:n] for n in (1, 37, 200)]
    q = rng.standard_normal((3, HEADS * HD)).astype(np.float32)
    got = attention_numba.attend_decode(np, HEADS, KV, HD, q, kc, vc, slot_lists)
    ref = attention_numpy.attend_decode(np, HEADS, KV, HD, q, kc, vc, slot_lists)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("start, t", [(0, 1), (0, 70), (50, 9), (130, 200)])  # one tile, several, a ragged last tile
def test_tiled_prefill_equals_plain(pool, start, t) -> None:  # noqa: ANN001
    kc, vc = pool
    rng = np.random.default_rng(start + t)
    slots = rng.permutation(400)[: start + t]
    q = rng.standard_normal((t, HEADS * HD)).astype(np.float32)
    got = attention_numba.attend_prefill_tiled(HEADS, KV, HD, q, kc, vc, slots, start)
    ref = attention_numpy.attend_prefill(np, HEADS, KV, HD, q, kc, vc, slots, start)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_long_prompts_take_the_tiled_kernel(pool, monkeypatch) -> None:  # noqa: ANN001
    """Past the score-matrix budget the plain kernel is never called."""
    kc, vc = pool
    monkeypatch.setattr(attention_numba.attention_numpy, "attend_prefill", None)  # would raise if called
    monkeypatch.setattr(attention_numba, "PLAIN_SCORE_BYTES", 0)
    q = np.random.default_rng(6).standard_normal((20, HEADS * HD)).astype(np.float32)
    out = attention_numba.attend_prefill(np, HEADS, KV, HD, q, kc, vc, np.arange(20), 0)
    assert out.shape == (20, HEADS * HD) and np.isfinite(out).all()
