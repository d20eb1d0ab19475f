"""Index families behind one interface (:class:`Index`), plus the spec factory.

Importing a family module registers its spec patterns with the factory.
"""
from .base import Index, RangeResult
from .factory import known_specs, make_index, register_spec
from .flat import FlatIndex
from .io import load_index
from .hnsw import HNSWIndex
from .kdtree import KDTreeIndex
from .ivf import IVFIndex
from .pq import PQIndex
from .sq import SQIndex
from .opq import OPQIndex

__all__ = ["Index", "RangeResult", "FlatIndex", "HNSWIndex", "make_index", "register_spec", "known_specs", "load_index",
           "KDTreeIndex", "IVFIndex", "PQIndex", "SQIndex", "OPQIndex"]
