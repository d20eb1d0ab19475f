"""One ``Runner`` per algorithm: Shoal indices (any registered spec) and peer libraries.

Every runner sees the same train/test arrays and returns *row numbers* of
``train`` as ids, so recall is computed the same way for all of them. Shoal
runners are generic over ``shoal.index.make_index`` and read each family's
``SEARCH_PARAMS`` to choose a sweep, so a family that lands later is benchmarked
without changing this file. Peers normalise vectors themselves for cosine
(nearest by L2 on unit vectors = nearest by cosine).
"""
from __future__ import annotations

import abc
import importlib
import itertools
import math
import os
import tempfile
from typing import Any

import numpy as np

from ..engine.errors import ShoalError
from .plans import index_plan

#: Values swept per search parameter; ``quick`` takes every other value and the last.
SWEEPS: dict[str, list[Any]] = {
    "ef_search": [10, 20, 40, 80, 160, 320],
    "nprobe": [1, 2, 4, 8, 16, 32, 64, 128],
    "max_leaves": [1, 2, 4, 8, 16, 64, 256, None],  # None: parameter left out (exact search)
    "eps": [3.0, 1.0, 0.3, 0.0],
}
#: Re-ranking variants of quantized indices (``rescore``/``oversample``).
RESCORE_SWEEP: list[dict[str, Any]] = [{"rescore": False}, {"rescore": True, "oversample": 2},
                                       {"rescore": True, "oversample": 8}]
#: Parameters that trade recall for speed, swept as a grid.
PRIMARY_PARAMS = ("ef_search", "nprobe", "max_leaves")


class SkipRunner(ShoalError):
    """The runner cannot run here (library missing, spec unregistered, metric unsupported)."""


def sweep_values(name: str, quick: bool) -> list[Any]:
    values = list(SWEEPS[name])
    if not quick:
        return values
    return values[::2] + ([values[-1]] if len(values) % 2 == 0 else [])


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1, norms)).astype(np.float32)


def default_nlist(n: int) -> int:
    """sqrt(n) lists (≥ 16): the FAISS rule of thumb, used identically for Shoal and FAISS."""
    return max(16, int(math.sqrt(n)))


def default_pq_m(dim: int) -> int:
    """Sub-quantizers: the divisor of ``dim`` closest to dim/2 (2 dimensions per byte)."""
    return min((d for d in range(1, dim + 1) if dim % d == 0), key=lambda d: (abs(d - dim / 2), -d))


def expand_spec(spec: str, n: int, dim: int) -> str:
    """Fill ``{nlist}`` and ``{m}`` placeholders for the data size."""
    return spec.format(nlist=default_nlist(n), m=default_pq_m(dim))


class Runner(abc.ABC):
    """Build once, then search with a list of parameter settings."""

    library: str = ""
    #: Spec used when only the library is named (``--peers hnswlib``).
    DEFAULT_SPEC = "default"
    #: Attributes set by ``__init__`` that survive ``release``.
    CONFIG = frozenset({"spec", "threads", "train_sample", "seed"})
    #: Whether ``search`` honours ``mask`` natively (else the filtered benchmark skips it).
    SUPPORTS_FILTER = False
    #: The algorithm returns the true top-k by construction (a scan, an exact tree).
    EXACT = False

    def __init__(self, spec: str, threads: int = 1) -> None:
        self.spec = spec
        self.threads = threads

    @property
    def name(self) -> str:
        return f"{self.library}:{self.spec}"

    @abc.abstractmethod
    def build(self, train: np.ndarray, metric: str) -> None: ...

    @abc.abstractmethod
    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        """Row ids ``(nq, k)``, -1 padded; ``mask`` (bool per row) restricts results when supported."""

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        return [{}]

    def default_params(self) -> dict[str, Any]:
        """A middle point of the sweep, for runs that use one setting (filtered search)."""
        points = self.sweep(quick=False)
        return points[len(points) // 2]

    def nbytes(self) -> int | None:
        return None

    def is_exact(self, params: dict[str, Any]) -> bool:
        """Whether this setting is an exact algorithm (its rows are not index results)."""
        return self.EXACT

    def plan(self, params: dict[str, Any], queries: int) -> dict[str, Any]:
        """The path that served the last ``search`` (see :mod:`shoal.bench.plans`)."""
        return index_plan(queries, exact=self.is_exact(params))

    def release(self) -> None:
        """Drop what ``build`` made, so the next runner's memory is not inflated by this one."""
        for key in [k for k in vars(self) if k not in self.CONFIG]:
            delattr(self, key)

    def _check_metric(self, metric: str, supported: tuple[str, ...]) -> None:
        if metric not in supported:
            raise SkipRunner(f"{self.name} does not support metric {metric!r}")


def _import(module: str, runner: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SkipRunner(f"{runner} needs the {module.split('.')[0]} package (pip install 'shoal[bench]')") from None


# ---------------------------------------------------------------------- Shoal
class ShoalRunner(Runner):
    library = "shoal"
    SUPPORTS_FILTER = True

    def __init__(self, spec: str, threads: int = 1, train_sample: int = 100_000, seed: int = 0) -> None:
        super().__init__(spec, threads)
        self.train_sample = train_sample
        self.seed = seed
        self.index: Any = None
        self.fallback_queries = 0

    def build(self, train: np.ndarray, metric: str) -> None:
        from ..engine.errors import InvalidSpecError
        from ..index import known_specs, make_index

        try:
            self.index = make_index(self.spec, train.shape[1], metric)
        except InvalidSpecError:
            raise SkipRunner(f"not registered yet (known: {', '.join(known_specs())})") from None
        if not self.index.is_trained:
            need = max(self.train_sample, int(getattr(self.index, "min_train_size", 0) or 0))
            rows = np.random.default_rng(self.seed).permutation(train.shape[0])[:need]
            self.index.train(train[np.sort(rows)])
        self.index.add(train, np.arange(train.shape[0]))

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        names = sorted(self.index.SEARCH_PARAMS)
        grids = []
        for name in PRIMARY_PARAMS:
            if name in names:
                values = sweep_values(name, quick)
                cap = getattr(self.index, "nlist", None) if name == "nprobe" else None
                if cap:
                    values = sorted({min(v, int(cap)) for v in values if v is not None})
                grids.append([{name: v} if v is not None else {} for v in values])
        if "rescore" in names and getattr(self.index, "keep_vectors", False):
            grids.append(RESCORE_SWEEP[::2] if quick else RESCORE_SWEEP)
        return [dict(itertools.chain.from_iterable(d.items() for d in combo)) for combo in itertools.product(*grids)]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        report: dict[str, Any] = {}
        ids = self.index.search(q, k, params=params, allowed=mask, report=report)[1]
        self.fallback_queries = int(report.get("fallback_queries", 0))
        return ids

    def is_exact(self, params: dict[str, Any]) -> bool:
        return bool(self.index.EXACT) and "max_leaves" not in params

    def plan(self, params: dict[str, Any], queries: int) -> dict[str, Any]:
        """An index that answered every query by its exact fallback served an exact scan."""
        return index_plan(queries, self.fallback_queries, exact=self.is_exact(params))

    def nbytes(self) -> int | None:
        return int(self.index.nbytes)


# ---------------------------------------------------------------------- peers
class FaissRunner(Runner):
    """Any ``faiss.index_factory`` string: Flat, HNSW32, IVF<n>,Flat, IVF<n>,PQ<m>, SQ8, ..."""

    library = "faiss"
    DEFAULT_SPEC = "Flat"
    SUPPORTS_FILTER = True

    def build(self, train: np.ndarray, metric: str) -> None:
        self.faiss = _import("faiss", self.name)
        self.faiss.omp_set_num_threads(self.threads)
        self._check_metric(metric, ("l2", "cosine", "ip"))
        self.cosine = metric == "cosine"
        x = normalise(train) if self.cosine else np.ascontiguousarray(train, dtype=np.float32)
        fmetric = self.faiss.METRIC_L2 if metric == "l2" else self.faiss.METRIC_INNER_PRODUCT
        self.index = self.faiss.index_factory(x.shape[1], self.spec, fmetric)
        if not self.index.is_trained:
            self.index.train(x[np.random.default_rng(0).permutation(x.shape[0])[:100_000]])
        self.index.add(x)
        self.params_space = self.faiss.ParameterSpace()

    def is_exact(self, params: dict[str, Any]) -> bool:
        return self.spec.upper() in ("FLAT", "IDMAP,FLAT")

    def _kind(self) -> str | None:
        spec = self.spec.upper()
        return "efSearch" if spec.startswith("HNSW") else "nprobe" if spec.startswith("IVF") else None

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        kind = self._kind()
        if kind is None:
            return [{}]
        values = sweep_values("ef_search" if kind == "efSearch" else "nprobe", quick)
        if kind == "nprobe":
            values = sorted({min(v, self.faiss.extract_index_ivf(self.index).nlist) for v in values})
        return [{kind: v} for v in values]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        q = normalise(q) if self.cosine else np.ascontiguousarray(q, dtype=np.float32)
        if mask is None:
            for key, value in params.items():
                self.params_space.set_index_parameter(self.index, key, value)
            return self.index.search(q, k)[1]
        bits = np.packbits(mask, bitorder="little")
        selector = self.faiss.IDSelectorBitmap(mask.shape[0], self.faiss.swig_ptr(bits))
        kind = self._kind()
        if kind == "efSearch":
            sp = self.faiss.SearchParametersHNSW(sel=selector, efSearch=params.get("efSearch", 16))
        elif kind == "nprobe":
            sp = self.faiss.SearchParametersIVF(sel=selector, nprobe=params.get("nprobe", 1))
        else:
            sp = self.faiss.SearchParameters(sel=selector)
        return self.index.search(q, k, params=sp)[1]

    def nbytes(self) -> int | None:
        return int(self.faiss.serialize_index(self.index).size)


class HnswlibRunner(Runner):
    library = "hnswlib"
    DEFAULT_SPEC = "HNSW16"
    SUPPORTS_FILTER = True
    SPACES = {"l2": "l2", "cosine": "cosine", "ip": "ip"}

    def build(self, train: np.ndarray, metric: str) -> None:
        hnswlib = _import("hnswlib", self.name)
        m = int(self.spec[4:] or 16) if self.spec.upper().startswith("HNSW") else 16
        self.index = hnswlib.Index(space=self.SPACES[metric], dim=train.shape[1])
        self.index.init_index(max_elements=train.shape[0], M=m, ef_construction=200, random_seed=100)
        self.index.add_items(train, np.arange(train.shape[0]), num_threads=self.threads)

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        return [{"ef": v} for v in sweep_values("ef_search", quick)]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        self.index.set_ef(max(int(params.get("ef", 64)), k))
        if mask is None:
            return self.index.knn_query(q, k, num_threads=self.threads)[0].astype(np.int64)
        allowed = mask.tolist()
        out = np.full((q.shape[0], k), -1, np.int64)
        for i in range(q.shape[0]):  # a Python filter callback holds the GIL: one thread, one query
            try:
                labels, _ = self.index.knn_query(q[i:i + 1], k, num_threads=1, filter=allowed.__getitem__)
            except RuntimeError:  # fewer than k allowed points reachable
                continue
            out[i, :labels.shape[1]] = labels[0]
        return out

    def nbytes(self) -> int | None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "h.bin")
            self.index.save_index(path)
            return os.path.getsize(path)


class UsearchRunner(Runner):
    library = "usearch"
    DEFAULT_SPEC = "HNSW16"
    METRICS = {"l2": "l2sq", "cosine": "cos", "ip": "ip"}

    def build(self, train: np.ndarray, metric: str) -> None:
        usearch = _import("usearch.index", self.name)
        self.index = usearch.Index(ndim=train.shape[1], metric=self.METRICS[metric], connectivity=16,
                                   expansion_add=200)
        self.index.add(np.arange(train.shape[0]), train, threads=self.threads)

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        return [{"expansion_search": v} for v in sweep_values("ef_search", quick)]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        self.index.expansion_search = int(params.get("expansion_search", 64))
        found = self.index.search(q, k, threads=self.threads)
        keys = np.full((q.shape[0], k), -1, np.int64)
        if hasattr(found, "counts"):  # BatchMatches; a single query gives Matches
            got = np.asarray(found.keys, dtype=np.int64).reshape(q.shape[0], -1)[:, :k]
            valid = np.arange(got.shape[1])[None, :] < np.asarray(found.counts).reshape(-1, 1)
            keys[:, :got.shape[1]] = np.where(valid, got, -1)
        else:
            got = np.asarray(found.keys, dtype=np.int64)[:k]
            keys[0, :got.size] = got
        return keys

    def nbytes(self) -> int | None:
        return int(self.index.memory_usage)


class VoyagerRunner(Runner):
    library = "voyager"
    DEFAULT_SPEC = "HNSW16"

    def build(self, train: np.ndarray, metric: str) -> None:
        voyager = _import("voyager", self.name)
        space = {"l2": voyager.Space.Euclidean, "cosine": voyager.Space.Cosine,
                 "ip": voyager.Space.InnerProduct}[metric]
        self.index = voyager.Index(space, num_dimensions=train.shape[1], M=16, ef_construction=200)
        self.index.add_items(train, np.arange(train.shape[0]), num_threads=self.threads)

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        return [{"query_ef": v} for v in sweep_values("ef_search", quick)]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        ids, _ = self.index.query(q, k, num_threads=self.threads, query_ef=max(k, int(params.get("query_ef", 64))))
        return np.asarray(ids, dtype=np.int64).reshape(q.shape[0], k)

    def nbytes(self) -> int | None:
        return len(self.index.as_bytes())


class ScipyKDTreeRunner(Runner):
    """scipy ``cKDTree``; ``eps`` > 0 makes it approximate."""

    library = "scipy"
    DEFAULT_SPEC = "cKDTree"

    def is_exact(self, params: dict[str, Any]) -> bool:
        return not params.get("eps")

    def build(self, train: np.ndarray, metric: str) -> None:
        spatial = _import("scipy.spatial", self.name)
        self._check_metric(metric, ("l2", "cosine"))
        self.cosine = metric == "cosine"
        self.tree = spatial.cKDTree(normalise(train) if self.cosine else train, leafsize=16)

    def sweep(self, quick: bool) -> list[dict[str, Any]]:
        return [{"eps": v} for v in sweep_values("eps", quick)]

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        _, ids = self.tree.query(normalise(q) if self.cosine else q, k=k, eps=params.get("eps", 0.0),
                                 workers=self.threads)
        ids = np.asarray(ids, dtype=np.int64).reshape(q.shape[0], k)
        ids[ids >= self.tree.n] = -1
        return ids

    def nbytes(self) -> int | None:
        return int(self.tree.data.nbytes + self.tree.indices.nbytes)


class SklearnRunner(Runner):
    """scikit-learn ``NearestNeighbors`` (spec ``brute``) or ``KDTree`` (spec ``kdtree``)."""

    library = "sklearn"
    DEFAULT_SPEC = "brute"
    EXACT = True

    def build(self, train: np.ndarray, metric: str) -> None:
        neighbors = _import("sklearn.neighbors", self.name)
        self._check_metric(metric, ("l2", "cosine"))
        self.cosine = metric == "cosine"
        x = normalise(train) if self.cosine else train
        if self.spec.lower() == "kdtree":
            self.model = neighbors.KDTree(x, leaf_size=40)
        elif self.spec.lower() == "brute":
            self.model = neighbors.NearestNeighbors(algorithm="brute", n_jobs=self.threads).fit(x)
        else:
            raise SkipRunner(f"unknown scikit-learn runner {self.spec!r}; use brute or kdtree")

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        q = normalise(q) if self.cosine else q
        if self.spec.lower() == "kdtree":
            return self.model.query(q, k=k, return_distance=False).astype(np.int64)
        return self.model.kneighbors(q, k, return_distance=False).astype(np.int64)

    def nbytes(self) -> int | None:
        if self.spec.lower() == "kdtree":
            return int(sum(a.nbytes for a in self.model.get_arrays()))
        return int(self.model._fit_X.nbytes)


class BruteSubsetRunner(Runner):
    """Filtered-search baseline: exact numpy GEMM over only the allowed rows."""

    library = "numpy"
    DEFAULT_SPEC = "brute-subset"
    SUPPORTS_FILTER = True
    EXACT = True
    BLOCK = 64

    def build(self, train: np.ndarray, metric: str) -> None:
        self.metric = metric
        self.x = normalise(train) if metric == "cosine" else np.ascontiguousarray(train, dtype=np.float32)
        self.norms = np.einsum("ij,ij->i", self.x, self.x)

    def search(self, q: np.ndarray, k: int, params: dict[str, Any],
               mask: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(self.x.shape[0]) if mask is None else np.flatnonzero(mask)
        q = normalise(q) if self.metric == "cosine" else q
        x, norms = self.x[rows], self.norms[rows]
        out = np.full((q.shape[0], k), -1, np.int64)
        kk = min(k, rows.size)
        if kk == 0:
            return out
        for s in range(0, q.shape[0], self.BLOCK):
            sims = q[s:s + self.BLOCK] @ x.T
            d = norms[None, :] - 2 * sims if self.metric == "l2" else -sims
            part = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < rows.size else np.tile(np.arange(kk), (d.shape[0], 1))
            order = np.argsort(np.take_along_axis(d, part, 1), axis=1, kind="stable")
            out[s:s + self.BLOCK, :kk] = rows[np.take_along_axis(part, order, 1)]
        return out


PEERS: dict[str, type[Runner]] = {
    "faiss": FaissRunner, "hnswlib": HnswlibRunner, "usearch": UsearchRunner, "voyager": VoyagerRunner,
    "scipy": ScipyKDTreeRunner, "sklearn": SklearnRunner, "numpy": BruteSubsetRunner,
}
#: Peer runners of the standard preset (``library:spec``; ``{nlist}``/``{m}`` filled per data set).
DEFAULT_PEERS = ("faiss:Flat", "faiss:HNSW32", "faiss:IVF{nlist},Flat", "faiss:IVF{nlist},PQ{m}", "faiss:SQ8",
                 "hnswlib:HNSW16", "usearch:HNSW16", "voyager:HNSW16", "scipy:cKDTree", "sklearn:brute",
                 "sklearn:kdtree")
#: Shoal specs of the standard preset; unregistered ones are skipped with a message.
DEFAULT_SHOAL = ("Flat", "HNSW32", "IVF{nlist},Flat", "IVF{nlist},SQ8", "IVF{nlist},PQ{m}", "PQ{m}", "SQ8",
                 "KDTree")


def make_runner(name: str, threads: int = 1) -> Runner:
    """``"shoal:HNSW32"``/``"HNSW32"`` → ShoalRunner; ``"faiss:IVF100,Flat"``, ``"hnswlib"`` → peers."""
    library, _, spec = name.partition(":")
    if not spec and library.lower() in PEERS:
        cls = PEERS[library.lower()]
        return cls(cls.DEFAULT_SPEC, threads)
    if not spec:
        return ShoalRunner(name, threads)
    if library.lower() == "shoal":
        return ShoalRunner(spec, threads)
    if library.lower() not in PEERS:
        raise SkipRunner(f"unknown runner library {library!r}; known: shoal, {', '.join(PEERS)}")
    return PEERS[library.lower()](spec, threads)
