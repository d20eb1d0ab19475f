"""Device memory for the GPU kernels: a budget, resident array copies and OOM handling.

Why one module: every GPU kernel must (a) keep an index's vectors/codes on the device
across calls instead of copying them per query batch, (b) stay inside one configurable
budget, and (c) turn an allocation failure into :class:`ResourceExhaustedError` instead
of crashing the server. Kernels ask :func:`device_memory` for the process-wide
:class:`DeviceMemory` and use

* ``resident(host)``: the device copy of a host array, uploaded once and kept while the
  host array lives (weak reference; evicted least-recently-used when the budget needs
  room). Host arrays handed to kernels are *append-only between calls* (rows below the
  cached length are never rewritten in place: indices grow by appending and compact into
  new arrays), so a longer view of the same buffer uploads only the new tail. Arrays
  written in place elsewhere pass a ``version`` that changes when they do.
* ``scratch_items(bytes_per_item, min_items)``: how many items of per-call scratch fit
  next to the resident data, which sets the chunk sizes of the kernels.
* ``guard()``: a context in which device out-of-memory becomes ResourceExhaustedError.

Budget: ``SHOAL_GPU_MEMORY_BUDGET`` (bytes with an optional K/M/G/T suffix, binary,
or a percentage of the device memory such as ``"60%"``) or :func:`set_memory_budget`;
default 80% of the device memory. The class works with any array module with numpy's
API, so its bookkeeping is tested on CPU with numpy standing in for cupy.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, ResourceExhaustedError

log = logging.getLogger("shoal.device")

ENV_BUDGET = "SHOAL_GPU_MEMORY_BUDGET"
DEFAULT_BUDGET_FRACTION = 0.8
#: Host arrays above this size go through a pinned staging buffer (twice the PCIe rate of pageable copies).
PINNED_MIN_BYTES = 8 << 20
PINNED_CHUNK_BYTES = 64 << 20
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_budget(text: str | int | float, total: int | None = None) -> int:
    """Bytes from ``1073741824``, ``"512M"``, ``"2GiB"``, ``"1.5g"`` or ``"60%"`` (of ``total``)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        s = str(text).strip().lower()
        pct = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", s)
        unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", s)
        if pct:
            if total is None:
                raise InvalidArgumentError(f"GPU memory budget {text!r} is a percentage but the device size is unknown")
            value = int(float(pct.group(1)) / 100.0 * total)
        elif unit:
            value = int(float(unit.group(1)) * _UNITS[unit.group(2)])
        else:
            raise InvalidArgumentError(
                f"cannot read GPU memory budget {text!r}; use bytes with an optional K/M/G/T suffix "
                "(e.g. '4G', '512MiB') or a percentage of device memory (e.g. '60%')")
    if value <= 0:
        raise InvalidArgumentError(f"GPU memory budget must be positive, got {text!r}")
    return value


def is_out_of_memory(exc: BaseException) -> bool:
    """cupy's OutOfMemoryError subclasses MemoryError; cuBLAS/driver failures say so in the message."""
    return isinstance(exc, MemoryError) or "cudaErrorMemoryAllocation" in str(exc) \
        or "CUBLAS_STATUS_ALLOC_FAILED" in str(exc)


@dataclass
class _Entry:
    dev: Any
    rows: int
    version: Hashable
    nbytes: int
    ref: weakref.ref = field(repr=False)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class DeviceMemory:
    """Resident copies + scratch accounting against one byte budget (see module docstring)."""

    def __init__(self, xp: ModuleType, budget: int) -> None:
        self.xp = xp
        self.budget = int(budget)
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._in_use: set[tuple] = set()
        self._lock = threading.RLock()
        self.resident_bytes = 0
        self.peak_bytes = 0
        self.uploaded_bytes = 0

    # ------------------------------------------------------------- resident
    def resident(self, host: np.ndarray, *, version: Hashable = None, reserve: int = 0) -> Any | None:
        """Device copy of ``host`` (kept across calls), or None when it cannot fit the budget
        with ``reserve`` bytes left over for scratch.

        None tells the caller to stream the array in chunks instead.
        """
        host = np.asarray(host)
        root = _root(host)
        offset = host.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        key = (id(root), offset, host.dtype.str, host.shape[1:], host.strides)
        with self._lock:
            if host.nbytes + reserve > self.budget:
                self._drop(key)
                return None
            entry = self._entries.get(key)
            if entry is not None and entry.version == version and entry.rows <= host.shape[0]:
                self._entries.move_to_end(key)
                self._in_use.add(key)
                if entry.rows < host.shape[0]:  # appended rows: upload only the tail
                    if not self._make_room(host.nbytes - entry.nbytes + reserve):
                        self._drop(key)
                        return None
                    self._extend(entry, host)
                return entry.dev[: host.shape[0]]
            if entry is not None:
                self._drop(key)
            if not self._make_room(host.nbytes + reserve):
                return None
            dev = self._upload(host)
            try:
                ref = weakref.ref(root, functools.partial(self._forget, key))
            except TypeError:  # cannot tell when it dies, so its id may be reused: this call only
                return dev
            entry = _Entry(dev, host.shape[0], version, host.nbytes, ref)
            self._entries[key] = entry
            self._in_use.add(key)
            self._account(host.nbytes)
            return dev

    def _extend(self, entry: _Entry, host: np.ndarray) -> None:
        dev = self.xp.empty(host.shape, host.dtype)
        dev[: entry.rows] = entry.dev[: entry.rows]
        self._copy_in(dev[entry.rows:], host[entry.rows:])
        self._account(host.nbytes - entry.nbytes)
        entry.dev, entry.rows, entry.nbytes = dev, host.shape[0], host.nbytes

    def on_device(self, host: np.ndarray, *, version: Hashable = None) -> Any:
        """The resident copy when it fits, else a temporary one (small per-index arrays)."""
        dev = self.resident(host, version=version)
        return self.upload(host) if dev is None else dev

    def upload(self, host: np.ndarray) -> Any:
        """A temporary device copy (query batches, per-call masks); counted as scratch by callers."""
        return self._upload(np.asarray(host))

    def _upload(self, host: np.ndarray) -> Any:
        dev = self.xp.empty(host.shape, host.dtype)
        self._copy_in(dev, host)
        return dev

    def _copy_in(self, dev: Any, host: np.ndarray) -> None:
        self.uploaded_bytes += host.nbytes
        if not hasattr(dev, "set"):  # numpy stand-in
            dev[...] = host
            return
        host = np.ascontiguousarray(host)
        if host.nbytes < PINNED_MIN_BYTES or host.ndim == 0:
            dev.set(host)
            return
        flat_dev, flat_host = dev.reshape(-1), host.reshape(-1)
        per = max(1, PINNED_CHUNK_BYTES // host.itemsize)
        mem = self.xp.cuda.alloc_pinned_memory(min(per, flat_host.size) * host.itemsize)
        staging = np.frombuffer(mem, host.dtype, min(per, flat_host.size))
        for s in range(0, flat_host.size, per):
            e = min(flat_host.size, s + per)
            staging[: e - s] = flat_host[s:e]
            flat_dev[s:e].set(staging[: e - s])

    # ----------------------------------------------------------- accounting
    def _account(self, delta: int) -> None:
        self.resident_bytes += delta
        self.peak_bytes = max(self.peak_bytes, self.resident_bytes)

    def _make_room(self, nbytes: int) -> bool:
        """Evict least-recently-used entries not used by the current call until ``nbytes`` fit."""
        for key in [k for k in self._entries if k not in self._in_use]:
            if self.resident_bytes + nbytes <= self.budget:
                break
            self._drop(key)
        return self.resident_bytes + nbytes <= self.budget

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.resident_bytes -= entry.nbytes
        self._in_use.discard(key)

    def _forget(self, key: tuple, _ref: Any) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.ref is _ref:
                self._drop(key)

    def scratch_items(self, bytes_per_item: int, min_items: int = 1, max_items: int | None = None) -> int:
        """Items of per-call scratch that fit beside the resident data (evicting idle entries first).

        Raises ResourceExhaustedError when not even ``min_items`` fit.
        """
        with self._lock:
            want = bytes_per_item * (max_items if max_items else min_items)
            self._make_room(want)
            free = self.budget - self.resident_bytes
            items = free // max(1, bytes_per_item)
            if items < min_items:
                raise ResourceExhaustedError(
                    f"GPU memory budget of {self.budget} bytes leaves {free} bytes for this search, which needs at "
                    f"least {bytes_per_item * min_items}; raise {ENV_BUDGET}, send smaller batches or use the CPU backend")
            return int(items if max_items is None else min(items, max_items))

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """One kernel call: marks its resident arrays busy and maps device OOM to ResourceExhaustedError."""
        with self._lock:
            outer = set(self._in_use)
        try:
            yield
        except ResourceExhaustedError:
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            self.release()
            raise ResourceExhaustedError(
                f"the GPU ran out of memory ({type(exc).__name__}: {exc}); lower {ENV_BUDGET} "
                f"(now {self.budget} bytes) or send smaller query batches") from None
        finally:
            with self._lock:
                self._in_use = outer

    def release(self) -> None:
        """Drop idle resident copies and return cached blocks to the driver."""
        with self._lock:
            for key in [k for k in self._entries if k not in self._in_use]:
                self._drop(key)
        pool = getattr(self.xp, "get_default_memory_pool", None)
        if pool is not None:
            pool().free_all_blocks()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._in_use.clear()
            self.resident_bytes = 0
        self.release()

    def report(self) -> dict[str, int]:
        """Budget, resident bytes (current and peak), entries and bytes uploaded so far."""
        out = {"budget": self.budget, "resident_bytes": self.resident_bytes, "peak_resident_bytes": self.peak_bytes,
               "resident_arrays": len(self._entries), "uploaded_bytes": self.uploaded_bytes}
        pool = getattr(self.xp, "get_default_memory_pool", None)
        if pool is not None:
            out["pool_used_bytes"] = int(pool().used_bytes())
            out["pool_total_bytes"] = int(pool().total_bytes())
        return out


_memory: DeviceMemory | None = None
_memory_lock = threading.Lock()


def device_memory() -> DeviceMemory:
    """The process-wide DeviceMemory on the current CUDA device (created on first use)."""
    global _memory
    with _memory_lock:
        if _memory is None:
            import cupy

            total = int(cupy.cuda.Device().mem_info[1])
            env = os.environ.get(ENV_BUDGET)
            budget = parse_budget(env, total) if env else int(DEFAULT_BUDGET_FRACTION * total)
            budget = min(budget, total)
            # the pool limit turns any allocation past the budget into a catchable OutOfMemoryError
            cupy.get_default_memory_pool().set_limit(size=budget)
            _memory = DeviceMemory(cupy, budget)
            log.info("shoal: GPU memory budget %d of %d bytes", budget, total)
        return _memory


def set_memory_budget(budget: str | int) -> None:
    """Change the GPU memory budget of this process (the argument form of ``SHOAL_GPU_MEMORY_BUDGET``)."""
    mem = device_memory()
    total = int(mem.xp.cuda.Device().mem_info[1])
    with mem._lock:
        mem.budget = min(parse_budget(budget, total), total)
        mem._make_room(0)
    mem.xp.get_default_memory_pool().set_limit(size=mem.budget)


def memory_report() -> dict[str, int]:
    """Device memory use of the GPU kernels (empty when no GPU kernel ran in this process)."""
    return {} if _memory is None else _memory.report()
