"""engine.threads: BLAS limited to one thread from whichever thread asks."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from shoal.engine.threads import single_threaded_blas

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> dict[str, int]:
    """Threads of each BLAS that has OpenBLAS's override (0.3.27 on). An older one (faiss-cpu bundles
    OpenBLAS 0.3.15) keeps threadpoolctl's setter, which from a worker thread still does not take."""
    libs = threadpoolctl.ThreadpoolController().lib_controllers
    return {lib.filepath: lib.num_threads for lib in libs
            if lib.user_api == "blas" and hasattr(lib.dynlib, "openblas_set_num_threads_local")}


def test_single_threaded_blas_holds_in_a_worker_thread() -> None:
    """The generation scheduler and server workers are not the main thread; there, threadpoolctl's
    setter left OpenBLAS at its count (2 read back inside the block, and 8-14 s 128-token prefills)."""
    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    seen: dict[str, dict[str, int]] = {}

    def worker() -> None:
        seen["before"] = _blas_threads()
        with single_threaded_blas():
            seen["inside"] = _blas_threads()
        seen["after"] = _blas_threads()

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    if not seen["inside"]:
        pytest.skip("no BLAS with openblas_set_num_threads_local is loaded")
    assert set(seen["inside"].values()) == {1}, seen
    assert all(seen["after"][lib] == n for lib, n in seen["before"].items()), seen  # restored
