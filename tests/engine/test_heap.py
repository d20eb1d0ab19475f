from __future__ import annotations

import platform

import numpy as np

from shoal.engine.heap import release_free_heap


def test_release_free_heap_after_large_frees() -> None:
    blocks = [np.ones(1 << 18, np.float32) for _ in range(32)]  # 1 MiB each, freed below
    del blocks
    released = release_free_heap()
    assert released == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
