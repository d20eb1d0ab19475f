"""The id tracker: external id -> internal id, the one owner of that mapping.

Internal ids are ``segment.base + row`` (see ``engine.segment``); the reverse
direction is each segment's ``ids`` list, so nothing else keeps a copy.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .errors import IdNotFoundError

ExternalId = Any


class IdTracker:
    """Where each live record is."""

    def __init__(self) -> None:
        self._internal: dict[ExternalId, int] = {}

    def __len__(self) -> int:
        return len(self._internal)

    def __contains__(self, ext: ExternalId) -> bool:
        return ext in self._internal

    def __iter__(self) -> Iterator[ExternalId]:
        return iter(self._internal)

    def get(self, ext: ExternalId) -> int | None:
        return self._internal.get(ext)

    def internal_of(self, ids: list[ExternalId], where: str) -> np.ndarray:
        """Internal ids of ``ids`` (all must be present, else IdNotFoundError naming up to 10)."""
        got = self._internal
        missing = [i for i in ids if i not in got]
        if missing:
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise IdNotFoundError(f"ids not found in {where}: {missing[:10]}{more}")
        return np.fromiter((got[i] for i in ids), np.int64, len(ids))

    def present(self, ids: Iterable[ExternalId]) -> list[ExternalId]:
        return [i for i in ids if i in self._internal]

    def assign(self, ids: Iterable[ExternalId], internal: Iterable[int]) -> None:
        self._internal.update(zip(ids, internal))

    def forget(self, ids: Iterable[ExternalId]) -> None:
        for ext in ids:
            del self._internal[ext]
