"""Give freed heap memory back to the operating system after large transient work.

glibc raises its mmap threshold after a large block is freed, so later multi-megabyte
arrays (a merge's copies, upsert batches) come from the heap, and freeing them leaves the
pages resident: a long ingest measured 154 MiB of such free heap at 300k rows. The
optimizer calls ``release_free_heap`` after each merge (a few milliseconds). Elsewhere
(macOS, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_libc_name = ctypes.util.find_library("c")
_trim = getattr(ctypes.CDLL(_libc_name), "malloc_trim", None) if _libc_name else None


def release_free_heap() -> bool:
    """Return free heap pages of every arena to the OS; whether the C library can."""
    if _trim is None:
        return False
    _trim(0)
    return True
