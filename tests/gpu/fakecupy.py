"""A numpy stand-in for ``cupy``/``cupyx`` so the GPU kernels' logic runs (and is tested) on CPU.

It forwards every attribute to numpy and adds what cupy has and numpy lacks. ``argsort``
is made stable, as cupy's (Thrust) sort is. It checks array logic, chunking and budget
handling; device speed and CUDA behaviour need the real-GPU tests in ``test_gpu.py``.
"""
from __future__ import annotations

import sys
import types

import numpy as np

CUPY_MODULES = ("shoal.index.kernels.flat_cupy", "shoal.index.kernels.ivf_cupy", "shoal.index.kernels.rescore_cupy",
                "shoal.quant.kernels.kmeans_cupy", "shoal.quant.kernels.pq_cupy")


def _argsort(a, axis=-1):
    return np.argsort(a, axis=axis, kind="stable")


def make_modules() -> tuple[types.ModuleType, types.ModuleType]:
    cp = types.ModuleType("cupy")
    cp.__getattr__ = lambda name: getattr(np, name)  # type: ignore[attr-defined]
    cp.ndarray = np.ndarray
    cp.asnumpy = np.asarray
    cp.argsort = _argsort
    cpx = types.ModuleType("cupyx")
    cpx.scatter_add = lambda a, idx, v: np.add.at(a, idx, v)
    return cp, cpx


def install(monkeypatch, budget: int):
    """Route ``import cupy`` to the stand-in, give the kernels a DeviceMemory over numpy, report GPU present."""
    from shoal.engine import backend, device

    cp, cpx = make_modules()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupyx", cpx)
    for name in CUPY_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    mem = device.DeviceMemory(cp, budget)
    monkeypatch.setattr(device, "_memory", mem)
    monkeypatch.setattr(backend, "gpu_available", lambda: True)
    return mem


def uninstall() -> None:
    """Forget kernel modules imported against the stand-in (monkeypatch restores the rest)."""
    for name in CUPY_MODULES:
        sys.modules.pop(name, None)
