"""OSError -> StorageError at the file layer, so callers see one error family naming the file.

A full disk raised a bare ``OSError`` out of upsert, flush and close (issue 15).
Every write and sync path of the storage layer runs inside :func:`storage_errors`:
``ENOSPC`` / ``EDQUOT`` become :class:`~shoal.engine.errors.DiskFullError`
(RESOURCE_EXHAUSTED over gRPC), any other errno a plain ``StorageError``; both
say what was being done to which file. ShoalErrors pass through unchanged.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..engine.errors import DiskFullError, ShoalError, StorageError

#: Errnos that mean "no room": freeing space (or raising the quota) fixes them.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def as_storage_error(exc: OSError, path: str | os.PathLike, action: str) -> StorageError:
    """The StorageError for ``exc`` raised while doing ``action`` (e.g. "append to") on ``path``."""
    reason = exc.strerror or str(exc)
    if exc.errno in FULL_ERRNOS:
        return DiskFullError(f"cannot {action} {os.fspath(path)}: {reason}; free space (or raise the quota) and retry")
    return StorageError(f"cannot {action} {os.fspath(path)}: {reason} (errno {exc.errno})")


@contextmanager
def storage_errors(path: str | os.PathLike, action: str) -> Iterator[None]:
    """Re-raise an OSError from the block as :func:`as_storage_error` of it (chained)."""
    try:
        yield
    except ShoalError:
        raise
    except OSError as exc:
        raise as_storage_error(exc, path, action) from exc


@contextmanager
def atomic_file(path: str | os.PathLike, action: str, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """Write ``path`` whole or not at all: a temp file, fsync, rename over ``path``, fsync the directory.

    On any failure the temp file is removed (it would hold the space a full disk needs
    back) and the error is raised as :func:`as_storage_error` of it; ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with storage_errors(path, action):
            with open(tmp, "wb") as f:
                yield f
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if fsync:
                fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename/create/unlink inside ``path`` durable."""
    with storage_errors(path, "sync directory"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
