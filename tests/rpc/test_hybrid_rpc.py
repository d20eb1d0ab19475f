"""Hybrid search over gRPC gives what the embedded call gives (text, sparse, fusion, errors)."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine.errors import InvalidArgumentError

TEXTS = ["the quick brown fox", "jumps over the lazy dog", "quick quick dog", "hello world", "fox and dog friends",
         "a dog named rex", "the fox said nothing"]


def fill(col):
    rng = np.random.default_rng(3)
    col.upsert(list(range(len(TEXTS))), rng.normal(size=(len(TEXTS), 4)),
               [{"text": t, "sp": {"indices": [i, i + 1], "values": [1.0, 0.5]}, "n": i} for i, t in enumerate(TEXTS)])
    return rng.normal(size=(2, 4))


@pytest.mark.parametrize("kwargs", [
    {"text": "quick dog"},
    {"text": ["quick dog", "fox"], "queries": True},
    {"text": {"text": "fox"}, "sparse": {"indices": [1, 2], "values": [1.0, 2.0]}, "fusion": "dbsf"},
    {"sparse": [{"indices": [3], "values": [1.0]}], "filter": {"n": {"$gt": 1}}},
    {"text": "dog", "queries": True, "fusion": "weighted", "fusion_params": {"weights": {"dense": 0.2}, "prefetch": 5}},
    {"text": "unknownword"},
])
def test_remote_hybrid_search_matches_embedded(client, kwargs):
    name = f"hy{abs(hash(str(kwargs))) % 10**8}"
    remote = client.create_collection(name, 4, text_fields=["text"], sparse_fields=["sp"])
    local = shoal.Database().create_collection(name, 4, text_fields=["text"], sparse_fields=["sp"])
    q = fill(remote)
    fill(local)
    kw = dict(kwargs)
    if kw.pop("queries", False):
        kw["queries"] = q if isinstance(kw.get("text"), list) else q[0]
    got, want = remote.search(k=4, **kw), local.search(k=4, **kw)
    got, want = (got, want) if isinstance(got, list) else ([got], [want])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.ids == w.ids and g.metadata == w.metadata and g.retrievers == w.retrievers
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-6)


def test_remote_hybrid_errors_are_invalid_argument(client):
    remote = client.create_collection("hyerr", 4, text_fields=["text"])
    fill(remote)
    for kw in ({"text": "x", "fusion": "borda"}, {"sparse": {"indices": [1], "values": [1.0]}},
               {"text": {"title": "x"}}, {"text": ["a", "b"], "queries": np.zeros(4)}):
        with pytest.raises(InvalidArgumentError):
            remote.search(k=3, **kw)
