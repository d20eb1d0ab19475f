"""check_k's documented maximum (issue 15: k = 2**31 allocated 8-16 GiB and answered INTERNAL)."""
from __future__ import annotations

import numpy as np
import pytest

import shoal
from shoal.engine.errors import InvalidArgumentError
from shoal.engine.validation import DEFAULT_MAX_K, MAX_K_ENV, check_k, max_k


def test_default_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_K_ENV, raising=False)
    assert max_k() == DEFAULT_MAX_K == 16384
    assert check_k(DEFAULT_MAX_K) == DEFAULT_MAX_K
    for k in (DEFAULT_MAX_K + 1, 2 ** 31, 2 ** 64):
        with pytest.raises(InvalidArgumentError, match=f"exceeds the maximum k of {DEFAULT_MAX_K}"):
            check_k(k)


@pytest.mark.parametrize("k", [0, -1, 1.5, "3", True, None])
def test_not_a_positive_integer(k) -> None:
    with pytest.raises(InvalidArgumentError, match="k must be a positive integer"):
        check_k(k)


def test_maximum_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_K_ENV, "100")
    assert check_k(100) == 100
    with pytest.raises(InvalidArgumentError, match="maximum k of 100"):
        check_k(101)
    monkeypatch.setenv(MAX_K_ENV, "lots")
    with pytest.raises(InvalidArgumentError, match=MAX_K_ENV):
        check_k(1)


def test_collection_search_enforces_the_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_K_ENV, raising=False)
    col = shoal.Database().create_collection("c", 4)
    col.upsert(list(range(5)), np.eye(5, 4))
    assert len(col.search(np.ones(4), DEFAULT_MAX_K)) == 5
    with pytest.raises(InvalidArgumentError, match="maximum k"):
        col.search(np.ones(4), 2 ** 31)
