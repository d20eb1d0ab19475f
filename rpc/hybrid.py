"""Hybrid search (text / sparse queries, fusion) between ``Collection.search`` arguments and
the ``QueryBatch.hybrid`` / ``QueryBatch.fusion`` messages.

On the wire every query of a batch carries its own ``HybridQuery`` (field -> text,
field -> sparse vector; the key ``""`` stands for "every text field" / "the one sparse
field", as a plain string or vector does in the embedded API). The server always
searches a batch and the SDK unwraps a single query, so both sides return the same
results as the embedded call.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.echo import shorten
from ..engine.errors import InvalidArgumentError
from .v1 import search_pb2


def _columns(value: Any, is_one: Any, what: str) -> tuple[dict[str, list[Any]], bool]:
    """``{field or "": per-query values}`` and whether the argument was a single query."""
    if isinstance(value, Mapping) and not is_one(value):
        out, singles = {}, set()
        for name, v in value.items():
            (col, single) = _columns(v, is_one, what)
            out[str(name)] = col[""]
            singles.add(single)
        return out, singles == {True}
    if is_one(value):
        return {"": [value]}, True
    if isinstance(value, (list, tuple)) and value and all(is_one(v) for v in value):
        return {"": list(value)}, False
    raise InvalidArgumentError(f"{what} must be one query, a non-empty list of them or a mapping field -> "
                               f"those, got {shorten(value)}")


def _is_sparse(v: Any) -> bool:
    return isinstance(v, Mapping) and set(v) == {"indices", "values"}


def fill_hybrid(batch: search_pb2.QueryBatch, text: Any, sparse: Any, fusion: str,
                fusion_params: Mapping[str, Any] | None) -> tuple[int, bool]:
    """Client side: add the per-query hybrid parts; returns ``(number of queries, single)``."""
    cols: list[tuple[str, dict[str, list[Any]]]] = []
    single = True
    for kind, value, is_one in (("text", text, lambda v: isinstance(v, str)), ("sparse", sparse, _is_sparse)):
        if value is not None:
            col, one = _columns(value, is_one, kind)
            cols.append((kind, col))
            single = single and one
    sizes = {len(v) for _, col in cols for v in col.values()}
    if len(sizes) != 1:
        raise InvalidArgumentError(f"text and sparse must hold the same number of queries, got {sorted(sizes)}")
    nq = sizes.pop()
    queries = [batch.hybrid.add() for _ in range(nq)]
    for kind, col in cols:
        for name, values in col.items():
            for q, v in zip(queries, values):
                if kind == "text":
                    q.text[name] = v
                else:
                    try:
                        q.sparse[name].indices.extend(int(i) for i in v["indices"])
                        q.sparse[name].values.extend(float(x) for x in v["values"])
                    except (TypeError, ValueError):
                        raise InvalidArgumentError(f"sparse query must have integer indices in [0, 2**32) and "
                                                   f"numeric values, got {shorten(v)}") from None
    batch.fusion.method = fusion if isinstance(fusion, str) else ""
    if not isinstance(fusion, str):
        raise InvalidArgumentError(f"unknown fusion {shorten(fusion)}; choose one of rrf, dbsf, weighted")
    params = dict(fusion_params or {})
    unknown = set(params) - {"k", "prefetch", "weights"}
    if unknown:
        raise InvalidArgumentError(f"unknown fusion_params {sorted(unknown)}; known: ['k', 'prefetch', 'weights']")
    for name in ("k", "prefetch"):
        value = params.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2 ** 32:
                raise InvalidArgumentError(f"fusion_params {name} must be a positive integer, got {shorten(value)}")
            setattr(batch.fusion, name, value)
    for name, w in (params.get("weights") or {}).items():
        batch.fusion.weights[str(name)] = w
    return nq, single


def hybrid_from_proto(batch: search_pb2.QueryBatch) -> dict[str, Any]:
    """Server side: the ``text`` / ``sparse`` / ``fusion`` / ``fusion_params`` arguments of a batch."""
    out: dict[str, Any] = {}
    for kind in ("text", "sparse"):
        keys = {tuple(sorted(getattr(q, kind))) for q in batch.hybrid}
        if keys == {()}:
            continue
        if len(keys) != 1:
            raise InvalidArgumentError(f"every query of a batch must name the same {kind} fields, got {sorted(keys)}")
        (names,) = keys
        if "" in names and len(names) > 1:
            raise InvalidArgumentError(f'{kind} key "" (every field) cannot be combined with field names')

        def value(q: Any, name: str) -> Any:
            v = getattr(q, kind)[name]
            return v if kind == "text" else {"indices": list(v.indices), "values": list(v.values)}

        cols = {name: [value(q, name) for q in batch.hybrid] for name in names}
        out[kind] = cols[""] if names == ("",) else cols
    f = batch.fusion
    out["fusion"] = f.method or "rrf"
    params: dict[str, Any] = {"weights": dict(f.weights)} if f.weights else {}
    if f.k:
        params["k"] = f.k
    if f.prefetch:
        params["prefetch"] = f.prefetch
    out["fusion_params"] = params
    return out
