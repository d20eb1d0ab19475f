import numpy as np
import pytest

from shoal import InvalidArgumentError
from shoal.rag import BloomEmbedder, jaccard, load_embedder


def test_registered_shape_and_normalised():
    emb = load_embedder("bloom")
    assert isinstance(emb, BloomEmbedder) and emb.dim == 2048
    v = emb.encode(["hello world", "", "another text"])
    assert v.shape == (3, 2048) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[[0, 2]], axis=1), 1.0, rtol=1e-6)
    assert not v[1].any()


def test_deterministic_and_bits_per_gram():
    emb = BloomEmbedder()
    a, b = BloomEmbedder().encode(["The quick brown fox"]), emb.encode(["The quick brown fox"])
    np.testing.assert_array_equal(a, b)
    grams = emb.grams("abc")
    assert grams == {" ab", "abc", "bc "}
    bits = emb.bits(["abc"])[0]
    expected = {p for g in grams for p in emb.positions(g)}
    assert set(np.flatnonzero(bits)) == expected and len(expected) <= 3 * emb.k
    assert emb.encode(["ABC  def"]).tolist() == emb.encode(["abc def"]).tolist()  # case and spacing normalised


def test_similar_strings_closer():
    emb = BloomEmbedder()
    base, near, far = "the for statement iterates over a sequence", "the for statement iterates over sequences", \
        "exceptions are raised by the interpreter"
    v = emb.encode([base, near, far])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    b = emb.bits([base, near, far])
    assert jaccard(b[0], b[1]) > jaccard(b[0], b[2])
    assert jaccard(b[0], b[0]) == 1.0


def test_rejects_bad_input():
    with pytest.raises(InvalidArgumentError):
        BloomEmbedder().encode("a single string")
    with pytest.raises(InvalidArgumentError):
        BloomEmbedder(k=9)
