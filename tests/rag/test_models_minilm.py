"""MiniLM (BERT) embedder: tokenizer ids, shapes, normalisation, semantics and
agreement with the transformers/torch reference (tests/rag/data/minilm_reference.npz,
made by tests/rag/data/make_minilm_reference.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from shoal.engine.backend import gpu_available  # noqa: E402
from shoal.engine.errors import InvalidArgumentError, NotFoundError  # noqa: E402
from shoal.rag.embedders import Embedder, MiniLMEmbedder, available_embedders, load_embedder, register_embedder  # noqa: E402

_spec = importlib.util.spec_from_file_location("llama_tiny", Path(__file__).with_name("llama_tiny.py"))
_support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_support)
one_blas_thread = _support.one_blas_thread

REF = Path(__file__).parent / "data" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    try:
        return MiniLMEmbedder(backend="numpy")
    except NotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REF) as z:
        return {k: z[k] for k in z.files}


def test_tokenizer_ids_match_reference(embedder: MiniLMEmbedder, reference: dict[str, np.ndarray]) -> None:
    sentences = [str(s) for s in reference["sentences"]]
    ids = embedder.tokenize(sentences)
    for i in range(3):
        assert ids[i] == reference[f"token_ids_{i}"].tolist()
    assert ids[0][0] == 101 and ids[0][-1] == 102  # [CLS] ... [SEP]
    assert len(ids[-1]) == int(reference["long_token_count"]) == 256  # truncated at max_length


def test_tokenizer_round_trip(embedder: MiniLMEmbedder) -> None:
    text = "vector databases index embeddings for nearest neighbour search"
    ids = embedder.tokenize([text])[0]
    assert embedder.tokenizer.decode(ids, skip_special_tokens=True) == text


def test_matches_sentence_transformers_reference(embedder: MiniLMEmbedder, reference: dict[str, np.ndarray]) -> None:
    sentences = [str(s) for s in reference["sentences"]]
    got = embedder.encode(sentences, batch_size=7)
    cos = (got * reference["embeddings"]).sum(axis=1)
    assert cos.min() > 1 - 1e-3
    np.testing.assert_allclose(got, reference["embeddings"], atol=1e-4)


def test_shapes_normalisation_and_batching(embedder: MiniLMEmbedder, reference: dict[str, np.ndarray]) -> None:
    sentences = [str(s) for s in reference["sentences"]][:8]
    one_batch = embedder.encode(sentences, batch_size=32)
    singles = np.vstack([embedder.encode([s]) for s in sentences])  # unpadded
    assert one_batch.shape == (8, embedder.dim) == (8, 384) and one_batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(one_batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_batch, singles, atol=1e-5)  # padding does not leak into the result
    assert embedder.encode([]).shape == (0, 384)


def test_semantic_sanity(embedder: MiniLMEmbedder) -> None:
    v = embedder.encode([
        "A man is eating food.", "A man is eating a piece of bread.",
        "How do I reset my password?", "I forgot my login credentials.",
        "The stock market fell sharply today.",
    ])
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 4] + 0.3 and sim[0, 1] > sim[0, 2] + 0.3
    assert sim[2, 3] > sim[2, 4] + 0.2 and sim[2, 3] > sim[2, 0] + 0.2


def test_bad_input_rejected(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(InvalidArgumentError):
        embedder.encode("not a list")
    with pytest.raises(InvalidArgumentError):
        embedder.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        embedder.encode(["ok"], batch_size=0)


def test_registry() -> None:
    assert "minilm" in available_embedders()
    with pytest.raises(NotFoundError):
        load_embedder("no-such-embedder")

    class Fixed:
        name, dim = "fixed", 2

        def encode(self, texts, batch_size=32):  # noqa: ANN001, ANN202
            return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))

    register_embedder("test-fixed", lambda **kw: Fixed())
    e = load_embedder("TEST-fixed")
    assert isinstance(e, Embedder) and e.encode(["a", "b"]).shape == (2, 2)


def test_model_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        MiniLMEmbedder(model_dir=tmp_path)


@pytest.mark.skipif(not gpu_available(), reason="no usable GPU: CuPy parity needs a CUDA device")
def test_cupy_matches_numpy(embedder: MiniLMEmbedder, reference: dict[str, np.ndarray]) -> None:
    sentences = [str(s) for s in reference["sentences"]]
    gpu = MiniLMEmbedder(backend="cupy")
    np.testing.assert_allclose(gpu.encode(sentences), embedder.encode(sentences), atol=1e-4)
