"""Compute kernels of the index families, one module per family and backend.

``<family>_numpy`` is the reference, ``<family>_numba`` the CPU default,
``<family>_cupy`` the GPU path; :func:`shoal.engine.backend.load_kernels`
picks one. Orchestration (validation, bookkeeping) stays in ``shoal.index``.
"""
