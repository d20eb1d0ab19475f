"""Inverted-file indices: IVF-Flat, IVF-SQ8 and IVF-PQ over a k-means coarse quantizer.

``train`` learns ``nlist`` centroids (k-means, optionally balanced) and, for SQ8/PQ, a
codec on the residuals ``x - centroid`` (one codebook shared by all lists, as in FAISS);
``add`` appends each vector to the list of its nearest centroid; ``search`` scans the
``nprobe`` lists nearest to the query (per-call parameter, default ``DEFAULT_NPROBE``).

Lists are contiguous slices of one array per field (codes, rows), each list with spare
capacity, so appending is a scatter and a scan is a linear walk; when a list runs out of
room all lists are laid out again with 50% headroom.

``nlist=None`` (spec ``"ivf"``) picks ``nlist = 4·sqrt(n)`` (at most n/16) from the
training size ``n``. ``balanced=True`` trains balanced k-means and caps list lengths on ``add`` too (vectors
beyond a cap go to their nearest list with room), bounding the worst-case probe cost.
``min_train_size`` (what a Segment waits for before training) is 39
points per centroid (FAISS's threshold for a meaningful k-means), at least 4096 for PQ.
Re-ranking, filtering and memory accounting: see :mod:`shoal.index.quantized`.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..engine.backend import Backend, load_kernels
from ..engine.echo import shorten
from ..engine.errors import InvalidArgumentError, InvalidSpecError
from ..engine.metrics import prepare
from ..engine.validation import as_matrix
from ..quant.kmeans import KMeans, balanced_assign
from ..quant.pq import ProductQuantizer
from ..quant.sq import ScalarQuantizer
from .base import positive_int_param
from .factory import register_spec, spec_option
from .options import SEED, Option
from .pq import MAX_PQ_M, PQ_MIN_TRAIN, residual_tables
from .quantized import QuantizedIndex, grow
from .sq import TRIM

CODECS = ("flat", "sq8", "pq")
DEFAULT_NPROBE = 8
#: Largest nlist (and nprobe): 2**20 lists, where FAISS's guidelines stop (for a billion vectors).
MAX_NLIST = 1 << 20
#: Training points per centroid below which k-means centroids are unreliable.
POINTS_PER_CENTROID = 39
#: Coarse k-means: FAISS's IVF settings (10 Lloyd iterations from k random points); k-means++
#: seeding costs O(n·nlist·d) per trial, more than the iterations it saves at nlist ~ 1000.
COARSE_NITER = 10
#: ``balanced=True``: no list grows beyond this multiple of the mean list length.
BALANCE_FACTOR = 1.2
#: ``min_train_size`` when nlist is chosen at train time.
AUTO_MIN_TRAIN = 4096


def default_nlist(n: int) -> int:
    """``4·sqrt(n)`` lists, but never fewer than 16 points per list on average."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 16))


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + lens[i])``."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.cumsum(lens) - lens
    return np.repeat(starts - offs, lens) + np.arange(total, dtype=np.int64)


class InvertedLists:
    """``nlist`` contiguous lists over shared arrays: ``rows`` (-1 = free slot) and payload fields."""

    def __init__(self, nlist: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        self.nlist = nlist
        self.starts = np.zeros(nlist, np.int64)
        self.sizes = np.zeros(nlist, np.int64)
        self.caps = np.zeros(nlist, np.int64)
        self.rows = np.zeros(0, np.int64)
        self.data = {name: np.zeros((0,) + shape, dtype) for name, (shape, dtype) in fields.items()}

    def append(self, lists: np.ndarray, rows: np.ndarray,
               payload: dict[str, np.ndarray]) -> tuple[bool, np.ndarray]:
        """Append entries; returns (whether existing entries moved, the new entries' positions)."""
        counts = np.bincount(lists, minlength=self.nlist)
        need = self.sizes + counts
        moved = bool((need > self.caps).any() or not self.rows.flags.writeable)
        if moved:
            self._relayout(np.where(need > self.caps, need + need // 2 + 4, self.caps))
        order = np.argsort(lists, kind="stable")
        sl = lists[order]
        within = np.arange(sl.size) - (np.cumsum(counts) - counts)[sl]
        dest = self.starts[sl] + self.sizes[sl] + within
        self.rows[dest] = rows[order]
        for name, arr in payload.items():
            self.data[name][dest] = arr[order]
        self.sizes += counts
        positions = np.empty_like(dest)
        positions[order] = dest
        return moved, positions

    def _relayout(self, caps: np.ndarray) -> None:
        starts = np.cumsum(caps) - caps
        total = int(caps.sum())
        src = _ranges(self.starts, self.sizes)
        dst = _ranges(starts, self.sizes)
        rows = np.full(total, -1, np.int64)
        rows[dst] = self.rows[src]
        for name, arr in self.data.items():
            new = np.zeros((total,) + arr.shape[1:], arr.dtype)
            new[dst] = arr[src]
            self.data[name] = new
        self.rows, self.starts, self.caps = rows, starts, caps.astype(np.int64)

    def entry_lists(self, entries: np.ndarray) -> np.ndarray:
        """List holding each entry (starts are ascending; empty lists share their successor's start)."""
        return np.searchsorted(self.starts, entries, side="right") - 1

    def entry_of_rows(self, n_rows: int) -> np.ndarray:
        """Entry index of every row (-1 for rows not in any list)."""
        out = np.full(n_rows, -1, np.int64)
        used = np.flatnonzero(self.rows >= 0)
        out[self.rows[used]] = used
        return out

    def compact(self, live: np.ndarray) -> None:
        """Keep entries of rows ``live`` (renumbered 0..len(live)-1), packed without headroom."""
        remap = np.full(max(int(self.rows.max(initial=-1)) + 1, 1), -1, np.int64)
        remap[live] = np.arange(live.size)
        ent = _ranges(self.starts, self.sizes)
        keep = ent[remap[self.rows[ent]] >= 0]
        lists = self.entry_lists(keep)
        self.sizes = np.bincount(lists, minlength=self.nlist).astype(np.int64)
        self.caps = self.sizes.copy()
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.rows = remap[self.rows[keep]]
        self.data = {name: np.ascontiguousarray(arr[keep]) for name, arr in self.data.items()}

    def state(self) -> dict[str, np.ndarray]:
        """Packed arrays (no headroom) in list order."""
        ent = _ranges(self.starts, self.sizes)
        return {"list_sizes": self.sizes, "list_rows": self.rows[ent],
                **{f"list_{name}": arr[ent] for name, arr in self.data.items()}}

    @classmethod
    def from_state(cls, nlist: int, arrays: dict[str, np.ndarray], names: list[str]) -> "InvertedLists":
        lists = cls(nlist, {})
        lists.sizes = np.array(arrays["list_sizes"], np.int64)
        lists.caps = lists.sizes.copy()
        lists.starts = np.cumsum(lists.sizes) - lists.sizes
        lists.rows = arrays["list_rows"]
        lists.data = {name: arrays[f"list_{name}"] for name in names}
        return lists


class IVFIndex(QuantizedIndex):
    """Inverted file with a ``codec`` of ``"flat"`` (raw vectors), ``"sq8"`` or ``"pq"`` (``m`` bytes)."""

    KIND = "IVF"
    SEARCH_PARAMS = frozenset({"nprobe", "rescore", "oversample"})
    OPTIONS = {"nlist": Option(int, None, 1, MAX_NLIST, nullable=True), "codec": Option(str, "flat", choices=CODECS),
               "m": Option(int, None, 1, MAX_PQ_M, nullable=True), "nprobe": Option(int, DEFAULT_NPROBE, 1, MAX_NLIST),
               "keep_vectors": Option(bool, None, nullable=True), "balanced": Option(bool, False),
               "sq_trim": TRIM, "seed": SEED}
    nlist: int | None
    codec: str
    m: int | None
    nprobe: int
    balanced: bool
    sq_trim: float
    seed: int

    def __init__(self, dim: int, metric: str = "l2", *, backend: str | Backend | None = None, **options: Any) -> None:
        super().__init__(dim, metric, backend=backend, **options)
        if self.codec == "pq" and self.m is None:
            raise InvalidArgumentError("IVF with the pq codec needs m (bytes per vector), e.g. m=8")
        if self.keep_vectors is None:  # raw vectors need no re-ranking copy; lossy codecs keep one by default
            self.keep_vectors = self.codec != "flat"
        self.sq = ScalarQuantizer(self.dim, "sq8", trim=self.sq_trim) if self.codec == "sq8" else None
        self.pq = ProductQuantizer(self.dim, self.m, seed=self.seed, backend=self.backend) if self.codec == "pq" else None
        self._ivf = load_kernels("shoal.index.kernels", "ivf", self.backend)
        self._kmk = load_kernels("shoal.quant.kernels", "kmeans", self.backend)
        self.centroids: np.ndarray | None = None
        self._lists: InvertedLists | None = None
        self._entry_of_row = np.zeros(0, np.int64)
        self._ltab = np.zeros((1, 1, 1), np.float32)

    # ------------------------------------------------------------- properties
    @property
    def min_train_size(self) -> int:
        base = AUTO_MIN_TRAIN if self.nlist is None else POINTS_PER_CENTROID * self.nlist
        return max(base, PQ_MIN_TRAIN) if self.codec == "pq" else base

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    @property
    def code_size(self) -> int:
        if self.codec == "pq":
            return self.pq.code_size
        return self.sq.code_size if self.codec == "sq8" else 4 * self.dim

    @property
    def nbytes(self) -> int:
        """All arrays incl. list headroom, the rescoring copy and PQ's per-list distance tables."""
        arrays = [self._table.labels, self._table.deleted, self._vec, self._entry_of_row, self._ltab]
        if self._lists is not None:
            arrays += [self.centroids, self._lists.rows, *self._lists.data.values()]
        arrays += [a for a in self._quantizer_state()[0].values()]
        return int(sum(a.nbytes for a in arrays))

    # ------------------------------------------------------------------ train
    def train(self, vectors: Any) -> None:
        """Coarse k-means on prepared vectors, then the residual codec (SQ8/PQ)."""
        x = prepare(as_matrix(vectors, self.dim), self.metric)
        nlist = self.nlist or default_nlist(x.shape[0])
        if x.shape[0] < nlist:
            raise InvalidArgumentError(f"IVF{nlist} needs at least {nlist} training vectors, got {x.shape[0]}")
        km = KMeans(nlist, niter=COARSE_NITER, init="random", seed=self.seed, balanced=self.balanced,
                    balance_factor=BALANCE_FACTOR, backend=self.backend).fit(x)
        centroids = km.centroids
        if self.codec != "flat":
            labels = km.assign(x)[0]
            residuals = x - centroids[labels]
            (self.sq or self.pq).train(residuals)
        self.nlist = nlist
        self.centroids = centroids
        self._build_tables()
        self._lists = InvertedLists(nlist, {"codes": self._code_field()})

    def _code_field(self) -> tuple[tuple[int, ...], np.dtype]:
        if self.codec == "flat":
            return (self.dim,), np.dtype(np.float32)
        if self.codec == "sq8":
            return (self.dim,), np.dtype(np.uint8)
        return (self.pq.m,), np.dtype(np.uint8)

    @property
    def _scan_metric(self) -> str:
        return self.metric if self.codec == "flat" else super()._scan_metric

    def _build_tables(self) -> None:
        if self.codec == "pq" and self._scan_metric == "l2":
            self._ltab = residual_tables(self.pq, self.centroids)

    # ------------------------------------------------------------------ writes
    def _encode(self, x: np.ndarray, lists: np.ndarray) -> np.ndarray:
        if self.codec == "flat":
            return x
        residuals = x - self.centroids[lists]
        return (self.sq or self.pq).encode(residuals)

    def _add_codes(self, x: np.ndarray, rows: np.ndarray) -> None:
        lists = self._assign(x)
        moved, positions = self._lists.append(lists, rows, {"codes": self._encode(x, lists)})
        if moved:
            self._entry_of_row = self._lists.entry_of_rows(self._table.size)
        else:  # only the new rows need their entry
            self._entry_of_row = grow(self._entry_of_row, int(rows[0]), self._table.size)
            self._entry_of_row[rows] = positions

    def _assign(self, x: np.ndarray) -> np.ndarray:
        if self.balanced:  # keep lists within BALANCE_FACTOR of the mean length
            return balanced_assign(self._kmk, x, self.centroids, BALANCE_FACTOR, self._lists.sizes)[0]
        return self._kmk.assign(x, self.centroids)[0]

    def _compact_codes(self, live: np.ndarray) -> None:
        self._lists.compact(live)
        self._entry_of_row = self._lists.entry_of_rows(live.size)

    # ------------------------------------------------------------------ search
    def _check_param_values(self, params: dict[str, Any]) -> None:
        super()._check_param_values(params)
        positive_int_param(params, "nprobe", self.nprobe)

    def _rows_scanned(self, live: int, params: dict[str, Any]) -> float:
        """The probed lists' share of the rows, plus the coarse step's distances to every centroid."""
        nprobe = min(int(params.get("nprobe", self.nprobe)), self.nlist)
        return live * nprobe / self.nlist + self.nlist * 4.0 * self.dim / max(self.code_size, 1)

    def _probe(self, q: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(probes, coarse distances)``: nearest lists (l2 order, ip for ip) and metric distances."""
        nprobe = min(positive_int_param(params, "nprobe", self.nprobe), self.nlist)
        return self._ivf.probe(q, self.centroids, self._metric_code, nprobe)

    def _candidates(self, q, kk, params, rowmask):
        nprobe = min(positive_int_param(params, "nprobe", self.nprobe), self.nlist)
        li = self._lists
        codes = li.data["codes"]
        head = (q, self.centroids, self._metric_code, nprobe, li.starts, li.sizes, li.rows, codes)
        if self.codec == "flat":
            return self._ivf.scan_flat(*head, rowmask, kk)
        if self.codec == "sq8":
            return self._ivf.scan_sq8(*head, self.sq.vmin, self.sq.scale, rowmask, kk)
        return self._ivf.scan_pq(*head, self.pq.centroids, self._ltab, self._scan_metric == "l2", rowmask, kk)

    def _range_candidates(self, q, params, rowmask):
        probes, _ = self._probe(q, params)
        li = self._lists
        out = []
        for p in probes:
            rows = li.rows[_ranges(li.starts[p], li.sizes[p])]
            rows = rows[rows >= 0]
            out.append(rows[rowmask[rows]])
        return out

    def _decode_rows(self, rows: np.ndarray) -> np.ndarray:
        entries = self._entry_of_row[rows]
        codes = self._lists.data["codes"][entries]
        if self.codec == "flat":
            return codes
        residuals = (self.sq or self.pq).decode(codes)
        return residuals + self.centroids[self._lists.entry_lists(entries)]

    # -------------------------------------------------------------- persistence
    def _quantizer_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.codec == "flat":
            return {}, {}
        return (self.sq or self.pq).state()

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        qarrays, qmeta = self._quantizer_state()
        arrays = {**self._base_state(), **qarrays}
        if self.centroids is not None:
            arrays["centroids"] = self.centroids
            arrays.update(self._lists.state())
        meta = {**qmeta, "codec": self.codec, "nlist": self.nlist, "nprobe": self.nprobe,
                "keep_vectors": self.keep_vectors, "balanced": self.balanced, "seed": self.seed}
        return arrays, meta

    @classmethod
    def _from_state(cls, meta, arrays, *, version, backend):
        index = cls(meta["dim"], meta["metric"], nlist=meta["nlist"], codec=meta["codec"], m=meta.get("pq_m"),
                    nprobe=meta["nprobe"], keep_vectors=meta["keep_vectors"], balanced=meta["balanced"],
                    sq_trim=meta.get("sq_trim", 0.0), seed=meta["seed"], backend=backend)
        if index.codec == "sq8":
            index.sq = ScalarQuantizer.from_state(index.dim, meta, arrays)
        elif index.codec == "pq":
            index.pq = ProductQuantizer.from_state(index.dim, meta, arrays, backend=index.backend)
        index._load_base(arrays)
        if "centroids" in arrays:
            index.centroids = np.array(arrays["centroids"])
            index._lists = InvertedLists.from_state(index.nlist, arrays, ["codes"])
            index._entry_of_row = index._lists.entry_of_rows(index._table.size)
            index._build_tables()
        return index


# ----------------------------------------------------------------- factory specs
def _build(match: re.Match[str], dim: int, metric: str, options: dict[str, Any], **from_spec: Any) -> IVFIndex:
    for name, value in from_spec.items():
        spec_option(options, name, value, match.group(0))
    return IVFIndex(dim, metric, **options)


def _nlist(match: re.Match[str]) -> int:
    nlist = int(match.group(1))
    if nlist <= 0:
        raise InvalidSpecError(f"index spec {shorten(match.group(0))}: nlist must be >= 1, e.g. 'IVF256,Flat'")
    return nlist


@register_spec(r"ivf", "ivf")
def _ivf_auto(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> IVFIndex:
    return _build(match, dim, metric, options, nlist=None, codec="flat")


@register_spec(r"ivf(\d+)(?:,flat)?", "IVF256,Flat")
def _ivf_flat(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> IVFIndex:
    return _build(match, dim, metric, options, nlist=_nlist(match), codec="flat")


@register_spec(r"ivf(\d+),sq8", "IVF256,SQ8")
def _ivf_sq8(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> IVFIndex:
    return _build(match, dim, metric, options, nlist=_nlist(match), codec="sq8")


@register_spec(r"ivf(\d+),pq(\d+)", "IVF256,PQ16")
def _ivf_pq(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> IVFIndex:
    return _build(match, dim, metric, options, nlist=_nlist(match), codec="pq", m=int(match.group(2)))


@register_spec(r"ivf(\d+),(.*)", "IVF<nlist>,{Flat|SQ8|PQ<m>}")
def _ivf_unknown(match: re.Match[str], dim: int, metric: str, options: dict[str, Any]) -> IVFIndex:
    raise InvalidSpecError(f"index spec {shorten(match.group(0))}: unknown IVF codec {shorten(match.group(2))}; "
                           "use Flat, SQ8 or PQ<m> (m dividing the dimension), e.g. 'IVF256,PQ16'")
