"""BLAS stays single-threaded while Shoal's kernels run.

Why: Numba's OpenMP pool and OpenBLAS's pthreads both spin-wait for work.
On a small machine, a BLAS call made right after a Numba parallel region
fights the still-spinning OpenMP threads; we measured a one-query flat search
on 2 cores going from ~1,500 to ~20 queries/s. Shoal gets its parallelism
from Numba (``prange``), so BLAS is limited to one thread inside our calls
and restored afterwards (the caller's own numpy keeps its setting).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


#: Numba's OpenMP threads sleep as soon as a parallel region ends instead of spinning (libgomp spins
#: ~300,000 times by default): a spinning worker burns the CPU its peers and the server's threads need.
#: Measured on the shared 2-core machine (load ~25), HNSW build of 20k GloVe rows on 2 threads: process CPU
#: 4.2-4.9 s spinning vs 1.7 s passive (hnswlib 1.7-2.1 s), wall 32-40 s vs 7.5 s (hnswlib 7.6 s). Set
#: before libgomp loads (at Numba's first parallel call); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@functools.lru_cache(maxsize=1)
def _blas_controllers() -> tuple[Any, ...]:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # threadpoolctl is a core dependency; stay usable without it
        return ()
    return tuple(lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas")


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit every loaded BLAS to one thread for the duration of the block (~2 µs)."""
    libs = _blas_controllers()
    saved = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, saved):
            lib.set_num_threads(n)


#: Batches smaller than this run kernels on the calling thread only.
SERIAL_BATCH = 4


@contextmanager
def threads_for_batch(nq: int) -> Iterator[None]:
    """Run Numba kernels single-threaded for tiny batches.

    Kernels parallelise over queries, so one query gains nothing from the
    pool, while waking it costs: on 2 loaded cores a one-query IVF search ran
    at ~80 queries/s with the pool and ~8,000 without. The setting is
    thread-local in Numba, so concurrent callers do not affect each other.
    """
    if nq >= SERIAL_BATCH:
        yield
        return
    import numba

    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(saved)
