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
from concurrent.futures import ThreadPoolExecutor
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
    try:  # SciPy's own OpenBLAS (scipy.linalg, Numba's compiled np.dot) loads late: load it before the one scan
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass
    return tuple(lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas")


def _openblas_override(lib: Any) -> Any | None:
    """OpenBLAS's ``openblas_set_num_threads_local`` (0.3.27 on; returns the previous value), else None.

    Why: set from a thread other than the main one (the generation scheduler, a server worker),
    threadpoolctl's ``set_num_threads`` did not limit that thread's calls, and this one does.
    Despite its name it acts process-wide here (OpenBLAS 0.3.30, pthreads): while a worker held
    it at 1, the main thread's GEMMs ran single-threaded too. Measured at load ~12 on 2 cores,
    100 GEMMs 128x576 @ 576x1536 in a worker thread: 4.4-8.0 s wall (1.4-2.4 CPU-s) with the
    old setter, 0.81-0.84 s (0.22) with this one; a 128-token SmolLM2 prefill on the generation
    thread went from 8-14 s to ~1 s.
    """
    if lib.internal_api != "openblas":
        return None
    return getattr(lib.dynlib, "openblas_set_num_threads_local", None)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit every loaded BLAS to one thread for the duration of the block (~2 µs)."""
    restore = []
    for lib in _blas_controllers():
        override = _openblas_override(lib)
        if override is not None:
            restore.append(functools.partial(override, override(1)))
        else:
            restore.append(functools.partial(lib.set_num_threads, lib.num_threads))
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()


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


def concurrent_kernels_safe() -> bool:
    """Whether Numba kernels may run on several Python threads at once: the tbb and omp layers
    allow it, the workqueue fallback aborts the process on concurrent parallel launches."""
    import numba

    try:
        return numba.threading_layer() in ("tbb", "omp")
    except ValueError:  # no parallel kernel has run in this process yet: do not be the first two
        return False


SEGMENT_THREADS_ENV = "SHOAL_SEGMENT_THREADS"


@functools.lru_cache(maxsize=1)
def segment_pool() -> ThreadPoolExecutor | None:
    """Threads that search a shard's segments side by side (None unless SHOAL_SEGMENT_THREADS turns them on).

    A one-query search runs its kernels on the calling thread (see ``threads_for_batch``), so a
    shard with several indexed segments walks them one after another on one core. The search
    kernels release the GIL: with ``SHOAL_SEGMENT_THREADS=N`` the caller runs one segment itself
    and N threads the rest. Off by default: it only pays when cores are idle. On a machine whose
    cores are all busy (a loaded server, a shared box) every hand-off waits for the scheduler; on
    2 cores at load average 25 a one-query search over 6 segments ran 14x slower with it.
    """
    raw = os.environ.get(SEGMENT_THREADS_ENV, "0")
    size = int(raw) if raw.isdigit() else -1
    if size < 0:
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(f"environment variable {SEGMENT_THREADS_ENV} must be an integer >= 0, got {raw!r}")
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="shoal-segments") if size > 0 else None
