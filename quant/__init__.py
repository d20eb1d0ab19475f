"""Quantizers: k-means (coarse quantizers, PQ codebooks), product and scalar quantizers, the OPQ rotation.

Kernels live in ``quant/kernels/<family>_<backend>.py`` and are picked by
:func:`shoal.engine.backend.load_kernels`.
"""
from .kmeans import KMeans, balanced_assign
from .opq import train_opq_rotation
from .pq import ProductQuantizer
from .sq import ScalarQuantizer

__all__ = ["KMeans", "balanced_assign", "ProductQuantizer", "ScalarQuantizer", "train_opq_rotation"]
