"""Numba kernels of the engine's own hot paths (query preparation)."""
