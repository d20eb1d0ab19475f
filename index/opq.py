"""``"OPQ<m>,<index>"``: any index behind a learnt OPQ rotation (FAISS's ``"OPQ16,IVF256,PQ16"``).

Training learns the rotation (shoal.quant.opq) on the prepared vectors, then trains the
inner index on the rotated ones; vectors and queries are rotated on the way in. The
rotation is orthogonal, so distances, re-ranking and range radii are those of the
original space; only the inner index's quantization error changes.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from ..engine.backend import Backend
from ..engine.errors import InvalidArgumentError
from ..engine.metrics import prepare
from ..engine.validation import as_matrix
from ..quant.opq import train_opq_rotation
from .base import Index, RangeResult
from .factory import make_index, register_spec
from .io import index_class
from .options import SEED, Option
from .pq import MAX_PQ_M

#: Largest number of OPQ training iterations (each is a PQ training plus an SVD).
MAX_NITER = 1000


class OPQIndex(Index):
    """An inner index searched in OPQ-rotated space."""

    KIND = "OPQROT"
    #: ``m`` has no default: it comes from the spec (``"OPQ16,..."``). The others carry an ``opq_``
    #: prefix because the spec's options are shared with the inner index (which has its own seed).
    OPTIONS = {"m": Option(int, None, 1, MAX_PQ_M), "opq_niter": Option(int, 20, 1, MAX_NITER), "opq_seed": SEED}
    m: int
    opq_niter: int
    opq_seed: int

    def __init__(self, dim: int, metric: str, inner: Index, *, backend: str | Backend | None = None,
                 **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)
        if inner.dim != self.dim or inner.metric != self.metric:
            raise InvalidArgumentError(f"inner index is {inner.dim}-d {inner.metric}, OPQ was asked for {self.dim}-d {self.metric}")
        if self.dim % self.m:
            raise InvalidArgumentError(f"OPQ needs m to be a positive divisor of dim={self.dim}, got m={self.m}")
        self.inner = inner
        self.rotation: np.ndarray | None = None

    # ------------------------------------------------------------- properties
    @property
    def is_trained(self) -> bool:
        return self.rotation is not None and self.inner.is_trained

    @property
    def min_train_size(self) -> int:
        return max(256, int(getattr(self.inner, "min_train_size", 1)))

    @property
    def code_size(self) -> int:
        return int(getattr(self.inner, "code_size"))

    @property
    def bytes_per_vector(self) -> float:
        return float(getattr(self.inner, "bytes_per_vector"))

    @property
    def ntotal(self) -> int:
        return self.inner.ntotal

    @property
    def nbytes(self) -> int:
        return self.inner.nbytes + (0 if self.rotation is None else int(self.rotation.nbytes))

    @property
    def SEARCH_PARAMS(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.SEARCH_PARAMS

    def __repr__(self) -> str:
        return f"OPQIndex(m={self.m}, inner={self.inner!r})"

    # ----------------------------------------------------------------- training
    def train(self, vectors: Any) -> None:
        x = prepare(as_matrix(vectors, self.dim), self.metric)
        self.rotation = train_opq_rotation(x, self.m, niter=self.opq_niter, seed=self.opq_seed, backend=self.backend)
        self.inner.train(self._rotate(x))

    def _rotate(self, x: np.ndarray) -> np.ndarray:
        assert self.rotation is not None
        return np.ascontiguousarray(x @ self.rotation)

    # ------------------------------------------------------------ family hooks
    def contains(self, ids: np.ndarray) -> np.ndarray:
        return self.inner.contains(ids)

    def _add(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.inner._add(self._rotate(x), labels)

    def finish_adds(self) -> None:
        self.inner.finish_adds()

    def search_cost(self, live: int, matched: int, k: int, params: dict[str, Any]) -> float:
        return self.inner.search_cost(live, matched, k, params) + self.dim  # + rotating the query

    def _search(self, q: np.ndarray, k: int, params: dict[str, Any],
                allowed: np.ndarray | None, report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return self.inner._search(self.inner._prepare_queries(self._rotate(q)), k, params, allowed, report)

    def _range_search(self, q: np.ndarray, radius: float, params: dict[str, Any],
                      allowed: np.ndarray | None) -> RangeResult:
        return self.inner._range_search(self._rotate(q), radius, params, allowed)

    def _remove(self, labels: np.ndarray) -> int:
        return self.inner._remove(labels)

    def _check_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        return self.inner._check_params(params)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = self.inner._state()
        inner_meta = {"dim": self.dim, "metric": self.metric, **meta}
        rot = {} if self.rotation is None else {"opq_rotation": self.rotation}
        return ({**rot, **{f"inner.{k}": v for k, v in arrays.items()}},
                {"opq_m": self.m, "opq_niter": self.opq_niter, "opq_seed": self.opq_seed, "inner_kind": self.inner.KIND,
                 "inner_version": self.inner.VERSION, "inner_meta": inner_meta})

    @classmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, version: int,
                    backend: str | Backend | None) -> "OPQIndex":
        inner_cls = index_class(meta["inner_kind"])
        inner_arrays = {k[len("inner."):]: v for k, v in arrays.items() if k.startswith("inner.")}
        inner = inner_cls._from_state(meta["inner_meta"], inner_arrays, version=meta["inner_version"], backend=backend)
        index = cls(meta["dim"], meta["metric"], inner, m=meta["opq_m"], opq_niter=meta["opq_niter"],
                    opq_seed=meta["opq_seed"], backend=backend)
        if "opq_rotation" in arrays:
            index.rotation = np.asarray(arrays["opq_rotation"], dtype=np.float32)
        return index


@register_spec(r"opq(\d+),(.+)", "OPQ16,PQ16")
def _opq_spec(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> OPQIndex:
    """Options ``opq_*`` are OPQ's own; the rest go to the inner index."""
    own = {name: options.pop(name) for name in ("opq_niter", "opq_seed") if name in options}
    inner = make_index(match.group(2), dim, metric, **options)
    return OPQIndex(dim, metric, inner, m=int(match.group(1)), backend=options.get("backend"), **own)
