"""The database adapters of the db suite do what their settings say."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shoal.bench.db_engines import ChromaDb


def test_chroma_ef_search_setting_reaches_the_graph(tmp_path: Any) -> None:
    """Chroma reads ef_search when it loads a segment; a sweep that only modified the collection's
    configuration measured the same graph search at every setting."""
    pytest.importorskip("chromadb")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 64)).astype(np.float32)
    q = rng.standard_normal((100, 64)).astype(np.float32)
    truth = np.argsort(((q[:, None, :] - x[None]) ** 2).sum(-1), axis=1)[:, :10]
    engine = ChromaDb(str(tmp_path), 64, "l2", 1)
    engine.create()
    engine.ingest(np.arange(x.shape[0]), x, {"g": np.zeros(x.shape[0], np.int64),
                                              "cat": np.zeros(x.shape[0], np.int64),
                                              "year": np.zeros(x.shape[0], np.int64)})

    def recall(ef: int) -> float:
        found = engine.query_batch(q, 10, None, {"ef_search": ef})
        return float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))

    low, high = recall(10), recall(400)
    engine.close()
    assert high > low + 0.05 and high > 0.97, (low, high)
