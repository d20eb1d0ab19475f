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


def test_check_ids_takes_integer_arrays_whole_and_still_refuses_what_does_not_fit() -> None:
    from shoal.engine.ids import check_ids
    from shoal.engine.metadata import is_plain_payload

    out = check_ids(np.array([3, -1, 2 ** 62], np.int64))
    assert out == [3, -1, 2 ** 62] and all(type(i) is int for i in out)
    assert check_ids(np.array([7, 8], np.uint8)) == [7, 8] and check_ids(np.array([], np.int64)) == []
    with pytest.raises(InvalidArgumentError, match=r"ids\[1\].*64 bits"):
        check_ids(np.array([1, 2 ** 63], np.uint64))
    assert is_plain_payload({"b": 1, "a": None}) and not is_plain_payload({"a": float("nan")})
    assert not is_plain_payload({"a": [1]}) and not is_plain_payload({"": 1}) and not is_plain_payload([])
