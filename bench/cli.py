"""``shoal bench``: recall/latency benchmark of Shoal indices against peer libraries.

Writes ``results.json``, ``results.md`` and recall–QPS plots to ``--out``;
``--readme`` also writes ``docs/bench/*.png`` and replaces the README's results section.
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Any

#: Presets: data size, queries, one-by-one queries, sweep density, filtered-benchmark size.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n": 20_000, "queries": 200, "n_single": 50, "filtered_n": 20_000},
    "standard": {"n": 100_000, "queries": 1000, "n_single": 200, "filtered_n": 50_000},
}

#: Size arguments each named data set's loader takes.
DATASET_ARGS = {"glove-50": ("n", "n_test"), "clustered": ("n", "n_test"), "minilm-pydoc": ("n", "n_test"),
                "digits": ("n_test",)}

#: Peers that filter natively (hnswlib callback, FAISS IDSelector) and the brute-force baseline.
FILTERED_PEERS = ("hnswlib:HNSW16", "faiss:HNSW32", "numpy:brute-subset")

#: Recall targets of the README table (the full report has all of ``report.RECALL_TARGETS``).
README_TARGETS = (0.95,)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark recall/QPS of Shoal indices against FAISS, hnswlib, ...",
                       description="Recall/latency benchmark: Shoal indices and peer libraries on the same data, "
                                   "same threads, same k. Specs may use {nlist} and {m} placeholders.")
    p.add_argument("--dataset", default="glove-50",
                   help="glove-50, digits, clustered, minilm-pydoc, or a .hdf5/.fvecs/.bvecs path (default glove-50)")
    p.add_argument("--n", type=int, help="training vectors to use (preset default)")
    p.add_argument("--queries", type=int, help="query vectors (preset default)")
    p.add_argument("--indices", default="default",
                   help="comma-separated Shoal specs, 'default' (standard list) or 'registered' (every known spec)")
    p.add_argument("--peers", default="default", help="comma-separated library:spec runners, 'default' or 'none'")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    p.add_argument("--out", default="bench-results", help="output directory (default bench-results)")
    p.add_argument("--cache", default=None, help="ground-truth cache directory (default ~/.cache/shoal/bench)")
    p.add_argument("--quick", action="store_true", help="small preset that finishes in a few minutes on 2 cores")
    p.add_argument("--no-filtered", action="store_true", help="skip the filtered-search benchmark")
    p.add_argument("--readme", action="store_true",
                   help="write docs/bench/*.png and the results section of README.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


_CODEC = re.compile(r"(flat|sq\w*|pq[\w{}]*)", re.IGNORECASE)


def _split(text: str) -> list[str]:
    """Comma-separated specs; a codec after an IVF part stays with it (``IVF256,PQ16,HNSW32``)."""
    out: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        prev = out[-1].rsplit(":", 1)[-1] if out else ""
        if out and prev.upper().startswith("IVF") and "," not in prev and _CODEC.fullmatch(token):
            out[-1] += "," + token
        elif token:
            out.append(token)
    return out


def _specs(arg: str, default: tuple[str, ...]) -> list[str]:
    from ..index.factory import known_specs

    if arg == "default":
        return list(default)
    if arg == "registered":
        return [s for s in known_specs() if "<" not in s]
    if arg == "none":
        return []
    return _split(arg)


def run(args: argparse.Namespace) -> int:
    from ..engine.errors import InvalidArgumentError
    from . import datasets, report
    from .runners import DEFAULT_PEERS, DEFAULT_SHOAL, SkipRunner, expand_spec, make_runner
    from .suite import BenchConfig, default_filtered_specs, run_benchmark, run_filtered

    preset = PRESETS["quick" if args.quick else "standard"]
    n = args.n or preset["n"]
    queries = args.queries or preset["queries"]
    if n <= 0 or queries <= 0 or args.k <= 0 or args.threads <= 0:
        raise InvalidArgumentError("--n, --queries, -k and --threads must be positive")
    sizes = {"n": n, "n_test": queries}
    data = datasets.load(args.dataset, **{k: sizes[k] for k in DATASET_ARGS.get(args.dataset, ())})
    if data.train.shape[0] > n:
        data.train = data.train[:n]
        data.neighbors = None
    n_train, dim = data.train.shape
    cfg = BenchConfig(k=args.k, threads=args.threads, n_single=preset["n_single"], quick=args.quick,
                      cache_dir=args.cache, progress=not args.no_progress)
    shoal_specs = [expand_spec(s, n_train, dim) for s in _specs(args.indices, DEFAULT_SHOAL)]
    peer_names = [expand_spec(s, n_train, dim) for s in _specs(args.peers, DEFAULT_PEERS)]
    runners = [make_runner(f"shoal:{s}", args.threads) for s in shoal_specs]
    skipped: list[str] = []
    for name in peer_names:
        try:
            runners.append(make_runner(name, args.threads))
        except SkipRunner as exc:
            skipped.append(str(exc))
    print(f"{data.name}: {n_train:,} × {dim} ({data.metric}), {data.test.shape[0]:,} queries, k={args.k}, "
          f"{args.threads} threads, {len(runners)} runners")
    records, more = run_benchmark(data, runners, cfg)
    skipped += more
    filtered: list[dict[str, Any]] = []
    if not args.no_filtered:
        fdata = datasets.Dataset(data.name, data.train[:preset["filtered_n"]], data.test[:min(200, queries)],
                                 data.metric)
        libraries = {name.partition(":")[0].lower() for name in peer_names} | {"numpy"}
        fpeers = [make_runner(name, args.threads) for name in FILTERED_PEERS if name.partition(":")[0] in libraries]
        filtered, more = run_filtered(fdata, default_filtered_specs(shoal_specs, dim), fpeers, cfg)
        skipped += more
    payload = {"machine": report.machine_info(args.threads), "k": args.k, "targets": list(report.RECALL_TARGETS),
               "dataset": {"name": data.name, "n_train": n_train, "dim": dim, "n_test": int(data.test.shape[0]),
                           "metric": data.metric, **{k: v for k, v in data.info.items() if isinstance(v, str)}},
               "results": records, "filtered": filtered, "skipped": skipped}
    os.makedirs(args.out, exist_ok=True)
    report.write_json(os.path.join(args.out, "results.json"), payload)
    text = report.report_markdown(payload)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")
    plot_dirs = [args.out] + ([os.path.join("docs", "bench")] if args.readme else [])
    for folder in plot_dirs:
        os.makedirs(folder, exist_ok=True)
        for key, suffix in (("qps_batch", "batch"), ("qps_single", "single")):
            report.plot(records, os.path.join(folder, f"{data.name}-{suffix}.png"), key,
                        f"{data.name}, k={args.k}, {args.threads} threads ({suffix} queries)")
    print(text)
    if args.readme:
        section = (f"Generated by `shoal bench {'--quick ' if args.quick else ''}--readme` "
                   f"(all targets in `{args.out}/results.md`); shared machines give noisy numbers.\n\n"
                   f"![recall vs QPS](docs/bench/{data.name}-batch.png)\n\n"
                   f"{report.report_markdown(payload, README_TARGETS)}")
        if not report.update_readme("README.md", section):
            print(f"README.md has no {report.README_BEGIN} … {report.README_END} markers; section not written")
    print(f"Results written to {args.out}/")
    return 0
