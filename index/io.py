"""Load any saved index: the file's kind tag picks the class."""
from __future__ import annotations

import os

from ..engine.backend import Backend
from ..engine.errors import FormatVersionError
from ..storage.arrayfile import read_kind
from .base import Index


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def index_class(kind: str, where: str | os.PathLike = "index file") -> type[Index]:
    """The family whose ``KIND`` tag is ``kind``."""
    for cls in _all_subclasses(Index):
        if getattr(cls, "KIND", None) == kind:
            return cls
    raise FormatVersionError(f"{where}: unknown index kind {kind!r}")


def load_index(path: str | os.PathLike, *, mmap: bool = True, backend: str | Backend | None = None,
               keep_on_disk: tuple[str, ...] = (), verify: bool = True) -> Index:
    """Load an index file written by any family's ``save`` (options: ``Index.load``)."""
    return index_class(read_kind(path), path).load(path, mmap=mmap, backend=backend, keep_on_disk=keep_on_disk,
                                                   verify=verify)
