"""Build an index from a short spec string, FAISS-style: ``"Flat"``, ``"HNSW32"``, ``"IVF256,PQ16"``.

Each index family registers the spec patterns it understands with
:func:`register_spec`; the factory knows no family by name. Matching is
case-insensitive and anchored, so ``"flat"`` and ``"Flat"`` are the same.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..engine.echo import shorten
from ..engine.errors import InvalidArgumentError, InvalidSpecError
from .base import Index
from .options import check_option_names

Builder = Callable[[re.Match[str], int, str, dict[str, Any]], Index]
_SPECS: list[tuple[re.Pattern[str], str, Builder]] = []


def register_spec(pattern: str, example: str) -> Callable[[Builder], Builder]:
    """Register ``builder(match, dim, metric, options)`` for specs matching ``pattern``."""

    def deco(builder: Builder) -> Builder:
        _SPECS.append((re.compile(pattern, re.IGNORECASE), example, builder))
        return builder

    return deco


def known_specs() -> list[str]:
    """One example per registered family, for error messages and ``--help``."""
    return [example for _, example, _ in _SPECS]


def make_index(spec: str, dim: int, metric: str = "l2", /, **options: Any) -> Index:
    """Build an (untrained) index from ``spec``; ``options`` go to the family constructor.

    Every option is checked against the family's ``OPTIONS`` table (type and range)
    before anything is allocated; any rejection is an InvalidSpecError naming the spec.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidSpecError(f"index spec must be a non-empty string, got {shorten(spec)}")
    check_option_names(options)
    text = spec.strip().replace(" ", "")
    for pattern, _, builder in _SPECS:
        match = pattern.fullmatch(text)
        if match:
            try:
                return builder(match, dim, metric, dict(options))
            except InvalidSpecError:
                raise
            except InvalidArgumentError as exc:
                raise InvalidSpecError(f"cannot build index {shorten(spec)}: {exc}") from None
    raise InvalidSpecError(f"unknown index spec {shorten(spec)}; known forms: {', '.join(known_specs())}")


def spec_option(options: dict[str, Any], name: str, value: Any, spec: str) -> None:
    """Put a number read from the spec (``"HNSW32"`` -> ``M=32``) into ``options``; an option saying otherwise is an error."""
    if name in options and options[name] != value:
        raise InvalidSpecError(f"index spec {shorten(spec)} sets {name}={shorten(value)} but the options say "
                               f"{name}={shorten(options[name])}; give it once")
    options[name] = value


@register_spec(r"flat", "Flat")
def _flat(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> Index:
    from .flat import FlatIndex

    return FlatIndex(dim, metric, **options)


#: Dimensions at or below which ``index="auto"`` prefers a k-d tree (when registered).
#: Measured crossover (bench/kdtree_vs_scipy.py, uniform data, n = 100k / 1M, k = 10, 2 cores):
#: the tree is 2.7x faster than Flat at d = 12 but 0.4-0.7x at d = 14-16, so 12, not 16.
AUTO_KDTREE_MAX_DIM = 12


def auto_spec(dim: int, metric: str = "l2") -> str:
    """The spec ``index="auto"`` resolves to: k-d tree for low dimensions, else HNSW, else Flat.

    A candidate that cannot serve ``metric`` (the k-d tree has no exact bound for ``ip``) is skipped.
    """
    for candidate in (["KDTree"] if dim <= AUTO_KDTREE_MAX_DIM else []) + ["HNSW32", "Flat"]:
        if any(p.fullmatch(candidate) for p, _, _ in _SPECS):
            try:
                make_index(candidate, dim, metric)
            except InvalidArgumentError:
                continue
            return candidate
    return "Flat"
