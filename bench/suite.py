"""Run runners over a data set: same process, same threads, same data, same k.

For each runner: build (timed, with bytes per vector and process RSS), then for
each point of its parameter sweep: batch searches of all queries (best-of-N QPS, recall)
and ``n_single`` one-at-a-time queries (QPS, p50/p95/p99 latency). A short
warm-up search precedes each point so JIT compilation is not timed.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.errors import ShoalError
from .datasets import Dataset, ground_truth
from .metrics import latency_percentiles, recall_ids, rss_bytes
from .plans import summarise
from .runners import Runner, SkipRunner

log = logging.getLogger(__name__)

#: Selectivities of the filtered benchmark (fraction of rows that match).
SELECTIVITIES = (0.001, 0.01, 0.1, 0.5, 1.0)
#: Resolution of the ``bucket`` payload used to filter (``bucket < s·BUCKETS``).
BUCKETS = 100_000


@dataclass
class BenchConfig:
    k: int = 10
    threads: int = 2
    #: Queries timed one at a time (latency percentiles, single-query QPS).
    n_single: int = 200
    #: Batch searches per point; the fastest counts (ann-benchmarks' best-of-N, robust to noisy neighbours).
    batch_runs: int = 3
    quick: bool = False
    cache_dir: str | None = None
    progress: bool = True


@contextlib.contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Numba, FAISS (OpenMP) and BLAS (threadpoolctl) all use ``n`` threads inside the block."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(limits=n)
    try:
        with limiter:
            yield
    finally:
        numba.set_num_threads(previous)


def _progress(items: Sequence[Any], desc: str, enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False)


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[Any, float]:
    """Result of ``fn`` and its fastest wall time over ``runs`` calls."""
    best = float("inf")
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def measure(runner: Runner, test: np.ndarray, truth: np.ndarray, params: dict[str, Any],
            cfg: BenchConfig) -> dict[str, Any]:
    """Recall, batch QPS and single-query latencies of one parameter setting."""
    runner.search(test[: min(8, test.shape[0])], cfg.k, params)  # warm-up: JIT, caches
    ids, batch_s = best_of(cfg.batch_runs, lambda: runner.search(test, cfg.k, params))
    plan = runner.plan(params, test.shape[0])
    lat = []
    for i in range(min(cfg.n_single, test.shape[0])):
        t1 = time.perf_counter()
        runner.search(test[i:i + 1], cfg.k, params)
        lat.append(time.perf_counter() - t1)
    return {"params": params, "plan": plan, "exact_algorithm": runner.is_exact(params),
            "recall": recall_ids(ids, truth, cfg.k), "qps_batch": test.shape[0] / batch_s,
            "qps_single": len(lat) / sum(lat) if lat else float("nan"), **latency_percentiles(lat)}


def run_benchmark(data: Dataset, runners: Sequence[Runner], cfg: BenchConfig,
                  truth: np.ndarray | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """All runners' sweep points as records, and a message per skipped runner."""
    truth = ground_truth(data, cfg.k, cfg.cache_dir) if truth is None else truth
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    with limit_threads(cfg.threads):
        for runner in runners:
            runner.threads = cfg.threads
            t0 = time.perf_counter()
            try:
                runner.build(data.train, data.metric)
            except SkipRunner as exc:
                log.warning("skipping %s: %s", runner.name, exc)
                skipped.append(f"{runner.name}: {exc}")
                continue
            build_s = time.perf_counter() - t0
            nbytes = runner.nbytes()
            common = {"algorithm": runner.name, "library": runner.library, "build_s": build_s, "nbytes": nbytes,
                      "bytes_per_vector": None if nbytes is None else nbytes / data.train.shape[0],
                      "rss_mb": rss_bytes() / 2**20}
            for params in _progress(runner.sweep(cfg.quick), runner.name, cfg.progress):
                records.append({**common, **measure(runner, data.test, truth, params, cfg)})
            log.info("%s: built in %.1fs, best recall %.3f", runner.name, build_s,
                     max(r["recall"] for r in records if r["algorithm"] == runner.name))
            runner.release()
    return records, skipped


def filter_buckets(n: int, seed: int = 0) -> np.ndarray:
    """Uniform integer payload per row; ``bucket < s·BUCKETS`` selects a fraction ≈ s."""
    return np.random.default_rng(seed + 1).integers(0, BUCKETS, n)


#: Planner settings that make every segment with an index use it (to measure the filtered graph walk
#: itself, beside the planner's own choice).
FORCE_INDEX = {"exact_max_rows": 0, "index_cost_factor": 0.0}


@dataclass(frozen=True)
class FilteredShoal:
    """A Shoal collection of the filtered benchmark: its label, index spec and planner settings."""

    name: str
    spec: str
    planner: dict[str, Any] | None = None

    @classmethod
    def of(cls, item: "FilteredShoal | str") -> "FilteredShoal":
        return item if isinstance(item, FilteredShoal) else cls(f"shoal:{item}", item)


def middle_params(spec: str, dim: int) -> dict[str, Any]:
    """The middle of the sweep of the spec's primary parameter: what the peers' ``default_params`` use."""
    from ..index import make_index
    from .runners import PRIMARY_PARAMS, sweep_values

    names = make_index(spec, dim).SEARCH_PARAMS
    out: dict[str, Any] = {}
    for name in PRIMARY_PARAMS:
        values = [v for v in sweep_values(name, False) if v is not None]
        if name in names:
            out[name] = values[len(values) // 2]
    return out


def run_filtered(data: Dataset, shoal_specs: Sequence[FilteredShoal | str], peers: Sequence[Runner],
                 cfg: BenchConfig, selectivities: Sequence[float] = SELECTIVITIES
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """Filtered k-NN at each selectivity: Shoal collections (fully indexed by ``optimize``) with a metadata
    filter, peers with a row mask. Each Shoal row records the plan the planner chose for it."""
    from ..engine.collection import Collection
    from ..engine.errors import InvalidSpecError
    from ..index import make_index

    buckets = filter_buckets(data.train.shape[0])
    masks = {s: buckets < int(round(s * BUCKETS)) for s in selectivities}
    truths = {s: ground_truth(data, cfg.k, allowed=m) for s, m in masks.items()}
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    meta = [{"bucket": int(b)} for b in buckets.tolist()]
    ids = np.arange(data.train.shape[0])
    with limit_threads(cfg.threads):
        for item in map(FilteredShoal.of, shoal_specs):
            try:
                col = Collection(f"bench_{len(records)}", data.train.shape[1], data.metric, index=item.spec,
                                 planner=item.planner)
                params = middle_params(col.index_spec, data.train.shape[1])
            except InvalidSpecError:
                skipped.append(f"{item.name} (filtered): not registered yet")
                continue
            t0 = time.perf_counter()
            col.upsert(ids, data.train, meta)
            col.optimize(wait=True)
            build_s = time.perf_counter() - t0
            exact_algorithm = make_index(col.index_spec, data.train.shape[1], data.metric).EXACT
            for s in _progress(selectivities, f"filtered {item.name}", cfg.progress):
                flt = {"bucket": {"$lt": int(round(s * BUCKETS))}}
                run = lambda: col.search(data.test, cfg.k, filter=flt, params=params, include=())  # noqa: E731
                run()  # warm-up
                res, elapsed = best_of(cfg.batch_runs, run)
                found = np.full((len(res), cfg.k), -1, np.int64)
                for i, r in enumerate(res):
                    found[i, :len(r.ids)] = r.ids
                plan = summarise(col.search(data.test, cfg.k, filter=flt, params=params, include=(),
                                            explain=True)[0].plan, len(res))
                records.append({**_filtered_record(item.name, s, masks[s], found, truths[s], elapsed, build_s,
                                                   params, cfg), "plan": plan, "exact_algorithm": exact_algorithm})
        for runner in peers:
            if not runner.SUPPORTS_FILTER:
                continue
            runner.threads = cfg.threads
            t0 = time.perf_counter()
            try:
                runner.build(data.train, data.metric)
            except SkipRunner as exc:
                skipped.append(f"{runner.name} (filtered): {exc}")
                continue
            build_s = time.perf_counter() - t0
            params = runner.default_params()
            for s in _progress(selectivities, f"filtered {runner.name}", cfg.progress):
                runner.search(data.test[:4], cfg.k, params, mask=masks[s])
                found, elapsed = best_of(cfg.batch_runs, lambda: runner.search(data.test, cfg.k, params, mask=masks[s]))
                records.append({**_filtered_record(runner.name, s, masks[s], found, truths[s], elapsed, build_s,
                                                   params, cfg), "plan": runner.plan(params, found.shape[0]),
                                "exact_algorithm": runner.is_exact(params)})
            runner.release()
    return records, skipped


def _filtered_record(name: str, s: float, mask: np.ndarray, found: np.ndarray, truth: np.ndarray,
                     elapsed: float, build_s: float, params: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    return {"algorithm": name, "selectivity": s, "matching": int(mask.sum()), "params": params,
            "recall": recall_ids(found, truth, cfg.k), "qps_batch": found.shape[0] / elapsed, "build_s": build_s}


def default_filtered_specs(specs: Sequence[str], dim: int) -> list[FilteredShoal]:
    """Flat, the first registered approximate Shoal index of the run (graph first, then IVF) as the
    planner runs it, and the same index forced onto its filtered path (``FORCE_INDEX``)."""
    from ..index import make_index

    ordered = [s for s in specs if s.lower().startswith("hnsw")] + [s for s in specs if s.lower().startswith("ivf")]
    for spec in ordered:
        try:
            make_index(spec, dim)
        except ShoalError:
            continue
        return [FilteredShoal.of("Flat"), FilteredShoal.of(spec),
                FilteredShoal(f"shoal:{spec} forced-index", spec, FORCE_INDEX)]
    return [FilteredShoal.of("Flat")]
