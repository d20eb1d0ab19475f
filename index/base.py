"""The Index interface every index family implements, and the helpers they share.

Conventions (same as FAISS): ``search`` returns ``(distances, ids)`` of shape
``(nq, k)``, distances ascending (see :mod:`shoal.engine.metrics`), padded with
``inf`` / ``-1`` when fewer than k results exist. Ties break by lower id.
Search parameters are per call (``params={"ef_search": 64}``); indices hold no
mutable query settings.

``allowed`` filters a search: either a boolean mask indexed by id (ids beyond
its length are not allowed) or an array of allowed ids.
"""
from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np

from ..engine.backend import Backend, get_backend
from ..engine.echo import shorten
from ..engine.errors import IdNotFoundError, InvalidArgumentError, NotTrainedError
from ..engine.metrics import check_metric, prepare
from ..engine.threads import threads_for_batch
from ..engine.validation import as_labels, as_matrix, check_k
from .kernels.topk import pad_to
from .options import Option, check_options

RangeResult = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(lims, distances, ids)``: results of query i are ``[lims[i]:lims[i+1]]``, sorted."""


class Index(abc.ABC):
    """Abstract base: validation lives here, families implement the ``_`` methods."""

    #: 8-character tag written in saved files, unique per family.
    KIND: ClassVar[str]
    #: Format version written by ``save``; ``load`` accepts ``SUPPORTED_VERSIONS``.
    VERSION: ClassVar[int] = 1
    #: Names accepted in ``params`` of ``search``.
    SEARCH_PARAMS: ClassVar[frozenset[str]] = frozenset()
    #: Metrics the family can serve.
    METRICS: ClassVar[tuple[str, ...]] = ("l2", "cosine", "ip")
    #: Exact indices return the true top-k (the planner relies on it).
    EXACT: ClassVar[bool] = False
    #: Batches smaller than this run kernels that never start the Numba pool, so ``search``
    #: skips the per-call thread limit (~5 µs); such families limit any pooled fallback themselves.
    POOL_FREE_BELOW: ClassVar[int] = 0
    #: The family's constructor options (see :mod:`shoal.index.options`); each becomes an attribute.
    OPTIONS: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None,
                 **options: Any) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {shorten(dim)}")
        self.dim = int(dim)
        self.metric = check_metric(metric)
        if self.metric not in self.METRICS:
            raise InvalidArgumentError(
                f"{type(self).__name__} cannot serve metric {self.metric!r}; it supports {', '.join(self.METRICS)}")
        for name, value in check_options(type(self).__name__, self.OPTIONS, options).items():
            setattr(self, name, value)
        self.backend = get_backend(backend)

    # ----------------------------------------------------------------- public API
    @property
    def is_trained(self) -> bool:
        """Indices that learn codebooks/centroids override this."""
        return True

    def train(self, vectors: Any) -> None:
        """Learn what the index needs from sample vectors (no-op by default)."""
        as_matrix(vectors, self.dim)

    def add(self, vectors: Any, ids: Any) -> None:
        """Add vectors under integer ids; an id already present is replaced (upsert)."""
        x = as_matrix(vectors, self.dim)
        labels = as_labels(ids, x.shape[0])
        if not self.is_trained:
            raise NotTrainedError(f"{type(self).__name__} must be trained before add()")
        self._add(prepare(x, self.metric), labels)

    def search(self, queries: Any, k: int, *, params: Mapping[str, Any] | None = None,
               allowed: Any = None, report: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest neighbours of each query: ``(distances, ids)``, both ``(nq, k)``.

        The index searches the way it is asked; where it must answer some queries
        another way to stay correct (a graph walk that reached fewer than k allowed
        rows is answered exactly), it counts them in ``report["fallback_queries"]``.
        """
        q = as_matrix(queries, self.dim, name="queries")
        k = check_k(k)
        p = self._check_params(params)
        if not self.is_trained:
            raise NotTrainedError(f"{type(self).__name__} must be trained before search()")
        return self.search_checked(self._prepare_queries(q), k, p, self._allowed_mask(allowed),
                                   {} if report is None else report)

    def search_checked(self, q: np.ndarray, k: int, params: dict[str, Any], mask: np.ndarray | None,
                       report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``search`` for a caller that already validated everything (the planner): ``q`` float32 in
        the kernels' space, ``k`` and ``params`` checked, ``mask`` a boolean array or None, index trained.

        Skipping the second validation is what keeps a one-query collection search near the kernel's time.
        """
        limit = nullcontext() if q.shape[0] < self.POOL_FREE_BELOW else threads_for_batch(q.shape[0])
        kk = min(k, max(self.ntotal, 1))  # at most ntotal results exist: a huge k costs what ntotal costs
        with limit:
            d, ids = self._search(q, kk, params, mask, report)
        return (d, ids) if kk == k else pad_to(d, ids, k)

    def range_search(self, queries: Any, radius: float, *, params: Mapping[str, Any] | None = None,
                     allowed: Any = None) -> RangeResult:
        """All stored vectors with distance < radius, per query, sorted by distance."""
        q = as_matrix(queries, self.dim, name="queries")
        if not np.isfinite(radius):
            raise InvalidArgumentError(f"radius must be finite, got {radius!r}")
        p = self._check_params(params)
        return self._range_search(prepare(q, self.metric), float(radius), p, self._allowed_mask(allowed))

    def remove(self, ids: Any) -> int:
        """Remove ids; unknown ids raise IdNotFoundError and nothing is removed."""
        labels = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        missing = labels[~self.contains(labels)]
        if missing.size:
            raise IdNotFoundError(f"ids not in index: {missing[:10].tolist()}{' ...' if missing.size > 10 else ''}")
        return self._remove(labels)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to one file with a versioned header (see storage.arrayfile)."""
        from ..storage.arrayfile import write_arrays

        arrays, meta = self._state()
        meta = {"dim": self.dim, "metric": self.metric, **meta}
        write_arrays(path, self.KIND, self.VERSION, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True, backend: str | Backend | None = None,
             keep_on_disk: tuple[str, ...] = (), verify: bool = True) -> "Index":
        """Load a file written by ``save`` of this class (memory-mapped by default).

        With ``mmap=False``, the arrays named in ``keep_on_disk`` stay memory-mapped (read-only)
        and the others are read into memory (``engine.disk_vectors``). ``verify=False`` skips the
        per-array checksums (for a caller that checked the whole file's)."""
        from ..storage.arrayfile import read_arrays

        version, meta, arrays = read_arrays(path, cls.KIND, cls.SUPPORTED_VERSIONS(), mmap=mmap or bool(keep_on_disk),
                                            verify=verify)
        if keep_on_disk and not mmap:
            arrays = {name: np.asarray(a) if name in keep_on_disk else np.array(a) for name, a in arrays.items()}
        return cls._from_state(meta, arrays, version=version, backend=backend)

    def copy(self) -> "Index":
        """An independent deep copy (the optimizer extends a copy while searches use the original)."""
        arrays, meta = self._state()
        meta = {"dim": self.dim, "metric": self.metric, **meta}
        return type(self)._from_state(meta, {name: np.array(a) for name, a in arrays.items()},
                                      version=self.VERSION, backend=self.backend)

    @classmethod
    def SUPPORTED_VERSIONS(cls) -> tuple[int, ...]:
        return (cls.VERSION,)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def nbytes(self) -> int:
        """Memory held by the index's arrays (vectors, codes, graph, bookkeeping)."""
        arrays, _ = self._state()
        return int(sum(a.nbytes for a in arrays.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}, ntotal={self.ntotal})"

    # ------------------------------------------------------------ family hooks
    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of live (not removed) vectors."""

    @abc.abstractmethod
    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean array: which of ``ids`` are live in the index."""

    @abc.abstractmethod
    def _add(self, x: np.ndarray, labels: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _search(self, q: np.ndarray, k: int, params: dict[str, Any],
                allowed: np.ndarray | None, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]: ...

    @abc.abstractmethod
    def _range_search(self, q: np.ndarray, radius: float, params: dict[str, Any],
                      allowed: np.ndarray | None) -> RangeResult: ...

    @abc.abstractmethod
    def _remove(self, labels: np.ndarray) -> int: ...

    @abc.abstractmethod
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON-able metadata that fully describe the index."""

    @classmethod
    @abc.abstractmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, version: int,
                    backend: str | Backend | None) -> "Index": ...

    # ----------------------------------------------------------------- helpers
    def _check_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Reject unknown names and bad values, so a bad call fails whichever path serves it."""
        if params is not None and not isinstance(params, Mapping):
            raise InvalidArgumentError(f"params must be a dict of search parameters, got {shorten(params)}")
        p = dict(params or {})
        unknown = set(p) - self.SEARCH_PARAMS
        if unknown:
            allowed = ", ".join(sorted(self.SEARCH_PARAMS)) or "none"
            raise InvalidArgumentError(
                f"unknown search parameter(s) {sorted(unknown)} for {type(self).__name__}; allowed: {allowed}")
        self._check_param_values(p)
        return p

    def reserve(self, n: int) -> None:
        """Room for ``n`` rows in all, before adds whose total the caller knows (the optimizer's
        merges): growth by doubling would otherwise leave up to twice the memory a merged segment
        needs. Families that do not grow row arrays ignore it."""

    def finish_adds(self) -> None:
        """Rows stop arriving for now (the optimizer finished a merge): do deferred build work here,
        outside any lock, instead of in the first search. Nothing to do for most families."""

    def search_cost(self, live: int, matched: int, k: int, params: dict[str, Any]) -> float:
        """Estimated cost of one query that ``matched`` of ``live`` rows pass, in rows an exact
        scan reads in the same time (the planner compares it with ``matched``).

        The default is a scan of every row; families that skip rows say how many they touch.
        """
        return float(live)

    def check_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate per-call search parameters without searching (the Collection's planner uses it)."""
        return self._check_params(params)

    def _check_param_values(self, params: dict[str, Any]) -> None:
        """Families with parameters validate their values here."""

    def _prepare_queries(self, q: np.ndarray) -> np.ndarray:
        """Queries for ``_search`` in the kernels' space; a family whose kernels normalise may skip it."""
        return prepare(q, self.metric)

    @staticmethod
    def _allowed_mask(allowed: Any) -> np.ndarray | None:
        """Normalise ``allowed`` to a boolean mask indexed by id (or None)."""
        if allowed is None:
            return None
        arr = np.asarray(allowed)
        if arr.dtype == bool:
            if arr.ndim != 1:
                raise InvalidArgumentError("allowed mask must be 1-D")
            return np.ascontiguousarray(arr)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidArgumentError(f"allowed must be a boolean mask or integer ids, got dtype {arr.dtype}")
        ids = arr.astype(np.int64).ravel()
        ids = ids[ids >= 0]
        mask = np.zeros(int(ids.max()) + 1 if ids.size else 0, dtype=bool)
        mask[ids] = True
        return mask


def positive_int_param(params: Mapping[str, Any], name: str, default: int, high: int | None = None) -> int:
    """Read an integer search parameter in ``[1, high]``: a bound on what one call may allocate."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 \
            or (high is not None and value > high):
        bound = f"an integer in [1, {high}]" if high is not None else "a positive integer"
        raise InvalidArgumentError(f"search parameter {name} must be {bound}, got {shorten(value)}")
    return int(value)


def allowed_rows(allowed: np.ndarray | None, labels: np.ndarray) -> np.ndarray | None:
    """Map an id-indexed mask onto a row-indexed mask for rows holding ``labels``."""
    if allowed is None:
        return None
    inside = labels < allowed.shape[0]
    rows = np.zeros(labels.shape[0], dtype=bool)
    rows[inside] = allowed[labels[inside]]
    return rows


def pad_results(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty result arrays: distances inf, ids -1."""
    return np.full((nq, k), np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


class LabelTable:
    """Rows of an index ↔ external integer labels, with tombstones.

    Rows are append-only; removing marks a row deleted. Upserting a label
    tombstones its old row. ``row_of`` is a dict because labels may be sparse.
    """

    def __init__(self, labels: np.ndarray | None = None, deleted: np.ndarray | None = None) -> None:
        self.labels = np.asarray(labels if labels is not None else np.zeros(0, np.int64), dtype=np.int64)
        self.deleted = np.asarray(deleted if deleted is not None else np.zeros(self.labels.shape[0], bool))
        self._size = self.labels.shape[0]
        live = np.flatnonzero(~self.deleted)
        self.row_of: dict[int, int] = dict(zip(self.labels[live].tolist(), live.tolist()))
        #: Row r holds label r (a segment's index: labels are its row numbers), so an id-indexed
        #: mask is already row-indexed and ``row_mask`` needs no gather.
        self._identity = bool(np.array_equal(self.labels, np.arange(self._size)))
        self._live: np.ndarray | None = None  # ~deleted[:size], kept until the next change
        #: (allowed, live, rows) of the last frozen mask mapped onto rows (see ``row_mask``).
        self._mapped: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def size(self) -> int:
        """Rows used, including deleted ones."""
        return self._size

    @property
    def live_count(self) -> int:
        return len(self.row_of)

    def append(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Assign rows to new labels; returns ``(new_rows, replaced_rows)``."""
        n = labels.shape[0]
        start = self._size
        self._reserve(start + n)
        rows = np.arange(start, start + n, dtype=np.int64)
        self.labels[start:start + n] = labels
        self.deleted[start:start + n] = False
        self._size += n
        self._identity = self._identity and bool(np.array_equal(labels, rows))
        self._live = None
        replaced = [self.row_of[lab] for lab in labels.tolist() if lab in self.row_of]
        replaced_rows = np.asarray(replaced, dtype=np.int64)
        self.deleted[replaced_rows] = True
        self.row_of.update(zip(labels.tolist(), rows.tolist()))
        return rows, replaced_rows

    def remove(self, labels: np.ndarray) -> np.ndarray:
        rows = np.asarray([self.row_of.pop(lab) for lab in labels.tolist() if lab in self.row_of], dtype=np.int64)
        self.deleted[rows] = True
        self._live = None
        return rows

    def contains(self, labels: np.ndarray) -> np.ndarray:
        return np.fromiter((lab in self.row_of for lab in np.asarray(labels).tolist()), dtype=bool,
                           count=np.asarray(labels).size)

    def row_mask(self, allowed: np.ndarray | None) -> np.ndarray:
        """Rows that are live and allowed: a boolean array of length size, read-only to callers
        (the live mask is cached between changes, so an unfiltered search does no O(n) work)."""
        if self._live is None:
            self._live = ~self.deleted[: self._size]
        live = self._live
        if allowed is None:
            return live
        if self._identity:
            head = allowed[: self._size]
            if head.shape[0] == self._size:
                return live & head
        frozen = not allowed.flags.writeable  # a mask its owner promises not to change (a filter cache's)
        hit = self._mapped
        if frozen and hit is not None and hit[0] is allowed and hit[1] is live:
            return hit[2]
        rows = live & allowed_rows(allowed, self.labels[: self._size])
        if frozen:  # rows no longer equal labels (a reordered graph): map a repeated filter's mask once
            rows.flags.writeable = False
            self._mapped = (allowed, live, rows)
        return rows

    def _reserve(self, n: int) -> None:
        cap = self.labels.shape[0]
        if n <= cap and self.labels.flags.writeable and self.deleted.flags.writeable:
            return
        new_cap = max(n, 2 * cap, 16)
        labels = np.zeros(new_cap, np.int64)
        deleted = np.ones(new_cap, bool)
        labels[: self._size] = self.labels[: self._size]
        deleted[: self._size] = self.deleted[: self._size]
        self.labels, self.deleted = labels, deleted

    def state(self) -> dict[str, np.ndarray]:
        return {"labels": self.labels[: self._size], "deleted": self.deleted[: self._size]}
