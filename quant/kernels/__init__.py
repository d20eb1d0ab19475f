"""Compute kernels of the quantizers (``kmeans_<backend>``, ``pq_<backend>``).

``_numpy`` is the reference, ``_numba`` the CPU default; a ``_cupy`` module can slot in
and :func:`shoal.engine.backend.load_kernels` picks it with fallback.
"""
