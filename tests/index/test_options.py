"""Every option of every index family is type- and range-checked at construction (issue 15).

The cases are generated from each family's ``OPTIONS`` table, so an option added to a
table is tested without touching this file.
"""
from __future__ import annotations

import math
from typing import Any

import pytest

import shoal
from shoal.engine.errors import InvalidArgumentError, InvalidSpecError
from shoal.index import FlatIndex, HNSWIndex, IVFIndex, KDTreeIndex, OPQIndex, PQIndex, SQIndex, make_index
from shoal.index.base import Index
from shoal.index.options import RESERVED, Option

DIM = 16
FAMILIES: list[type[Index]] = [FlatIndex, HNSWIndex, IVFIndex, KDTreeIndex, OPQIndex, PQIndex, SQIndex]


def _build(cls: type[Index], **options: Any) -> Index:
    """An index of ``cls`` with ``options`` (OPQ wraps a PQ4; IVF-PQ gets the m it needs)."""
    if cls is OPQIndex:
        return OPQIndex(DIM, "l2", PQIndex(DIM, "l2", m=4), **{"m": 4, **options})
    if cls is IVFIndex and options.get("codec") == "pq":
        options.setdefault("m", 4)
    return cls(DIM, "l2", **options)


def _bad_values(opt: Option) -> list[Any]:
    """Values of the wrong type and just outside the range."""
    wrong_type = {int: ["x", 1.5, True, None, [1]], float: ["x", True, None, math.nan, math.inf, 10 ** 400],
                  bool: [1, "true", None], str: [5, None, b"flat"]}[opt.type]
    bad = [v for v in wrong_type if not (v is None and opt.nullable)]
    if opt.low is not None:
        bad.append(type(opt.low)(opt.low) - 1)
    if opt.high is not None:
        bad.append(opt.high if opt.open_high else opt.high + 1)
    if opt.choices:
        bad.append("no-such-choice")
    return bad


CASES = [(cls, name, opt, value) for cls in FAMILIES for name, opt in cls.OPTIONS.items()
         for value in _bad_values(opt)]


@pytest.mark.parametrize("cls, name, opt, value", CASES,
                         ids=[f"{c.__name__}-{n}-{v!r}"[:60] for c, n, _, v in CASES])
def test_bad_option_rejected_naming_option_and_range(cls, name, opt, value) -> None:
    with pytest.raises(InvalidSpecError) as info:
        _build(cls, **{name: value})
    message = str(info.value)
    assert f"option {name} must be {opt.allowed()}" in message
    assert len(message) < 400  # an echoed value is shortened
    assert info.value.grpc_code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("cls", FAMILIES)
def test_defaults_and_bounds_accepted(cls) -> None:
    """Every declared default is valid, and the range bounds themselves are accepted."""
    index = _build(cls)
    for name, opt in cls.OPTIONS.items():
        if opt.default is not None:
            assert getattr(index, name) == opt.default
    for name, opt in cls.OPTIONS.items():
        if opt.type is int and opt.low is not None and name not in ("m",):  # m must divide the dimension
            assert getattr(_build(cls, **{name: int(opt.low)}), name) == opt.low


@pytest.mark.parametrize("cls", FAMILIES)
def test_unknown_option_lists_the_known_ones(cls) -> None:
    with pytest.raises(InvalidSpecError, match="unknown option") as info:
        _build(cls, bogus=1)
    for name in cls.OPTIONS:
        assert name in str(info.value)


@pytest.mark.parametrize("spec, options, message", [
    ("IVF4,Flat", {"seed": "x"}, "option seed must be an integer"),
    ("HNSW", {"M": 2 ** 40}, r"option M must be an integer in \[2, 512\]"),
    ("HNSW99999999999999999999", {}, r"option M must be an integer in \[2, 512\], got 99999999999999999999"),
    ("OPQ4,PQ4", {"opq_niter": "a"}, "option opq_niter must be an integer"),
    ("OPQ4,PQ4", {"opq_seed": 1.5}, "option opq_seed must be an integer"),
    ("OPQ99999999999999,PQ4", {}, "option m must be an integer"),
    ("HNSW32", {"M": 16}, "sets M=32 but the options say M=16"),
    ("IVF16,PQ4", {"m": 8}, "sets m=4 but the options say m=8"),
    ("Flat", {"backend": 5}, "backend must be a name"),
    ("Flat", {"backend": "gpu9"}, "unknown backend"),
    ("x" * 5000, {}, r"unknown index spec 'x{10,}\.\.\. \(5000 chars\)"),
])
def test_issue_cases_rejected_at_create_collection(spec: str, options: dict, message: str) -> None:
    db = shoal.Database()
    with pytest.raises(InvalidArgumentError, match=message):
        db.create_collection("p", 8 if not spec.startswith("OPQ") else 16, index=spec, **options)
    assert db.list_collections() == []


@pytest.mark.parametrize("name", RESERVED)
def test_option_named_like_a_parameter(name: str) -> None:
    with pytest.raises(InvalidSpecError, match="clash with parameters"):
        make_index("Flat", 8, "l2", **{name: 1})


def test_bad_option_leaves_a_durable_database_openable(tmp_path) -> None:
    with shoal.Database(tmp_path) as db:
        db.create_collection("good", 4).upsert([1], [[1, 2, 3, 4]])
        with pytest.raises(InvalidSpecError):
            db.create_collection("bad", 4, index="IVF4,Flat", seed="x")
    with shoal.Database(tmp_path) as db:
        assert db.list_collections() == ["good"] and db.get_collection("good").count() == 1
