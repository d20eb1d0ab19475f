"""The one backend switch: numpy (reference), numba (CPU default) or cupy (GPU).

Code never branches on the backend name. An index asks ``load_kernels`` for
its kernel module and gets ``<family>_<backend>``; a family that has no module
for the chosen backend falls back along cupy -> numba -> numpy.

Selection order: explicit argument, then ``SHOAL_BACKEND``, then ``"auto"``
(cupy when a usable GPU is found, else numba).
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .echo import shorten
from .errors import InvalidArgumentError

log = logging.getLogger("shoal.backend")

BACKENDS = ("numpy", "numba", "cupy")
_FALLBACK = {"cupy": ("cupy", "numba", "numpy"), "numba": ("numba", "numpy"), "numpy": ("numpy",)}


@dataclass(frozen=True)
class Backend:
    """A resolved backend: its name and its array module (numpy or cupy)."""

    name: str

    @property
    def xp(self) -> ModuleType:
        if self.name == "cupy":
            import cupy

            return cupy
        import numpy

        return numpy

    @property
    def on_gpu(self) -> bool:
        return self.name == "cupy"


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when CuPy imports, sees a device and can run a tiny kernel.

    ``import cupy`` succeeds on machines without a driver; every call then
    raises, so the smoke computation is what tells. Logged once.
    """
    reason = ""
    level = logging.WARNING  # cupy is installed, so a GPU was expected
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            reason = "no CUDA device"
        else:
            x = cupy.arange(8, dtype=cupy.float32)
            # a reduction and a cuBLAS GEMM: the two things every GPU kernel needs
            if float((x * x).sum()) != 140.0 or float((x[None, :] @ x[:, None])[0, 0]) != 140.0:
                reason = "GPU smoke computation returned a wrong result"
    except ImportError:
        reason = "cupy is not installed (pip install 'shoal[gpu]')"
        level = logging.INFO
    except Exception as exc:  # CUDARuntimeError, driver errors, OOM at start-up
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        log.log(level, "shoal: no usable GPU (%s); using the CPU backend", reason)
        return False
    log.info("shoal: using the GPU (CuPy %s, device 0)", cupy.__version__)
    return True


def get_backend(name: str | Backend | None = None) -> Backend:
    """Resolve a backend name (or None for ``SHOAL_BACKEND`` / auto)."""
    if isinstance(name, Backend):
        return name
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(f"backend must be a name ({', '.join(BACKENDS)} or 'auto'), got {shorten(name)}")
    chosen = (name or os.environ.get("SHOAL_BACKEND") or "auto").lower()
    if chosen == "auto":
        return Backend("cupy" if gpu_available() else "numba")
    if chosen not in BACKENDS:
        raise InvalidArgumentError(
            f"unknown backend {shorten(chosen)}; choose one of {', '.join(BACKENDS)} or 'auto'"
        )
    if chosen == "cupy" and not gpu_available():
        raise InvalidArgumentError(
            "backend 'cupy' was requested but no usable GPU was found; use 'auto' to fall back to the CPU"
        )
    return Backend(chosen)


def load_kernels(package: str, family: str, backend: Backend) -> Any:
    """Import ``package.family_<backend>``, falling back to slower backends."""
    for candidate in _FALLBACK[backend.name]:
        try:
            return importlib.import_module(f"{package}.{family}_{candidate}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{family}_{candidate}":
                raise
    raise ModuleNotFoundError(f"no kernels for {family!r} in {package}")
