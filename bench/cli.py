"""``shoal bench``: Shoal against its peers, in three suites.

* ``--suite index`` (default): recall/QPS of Shoal's indices against index libraries (FAISS, hnswlib, ...);
  writes ``results.json``, ``results.md`` and recall–QPS plots to ``--out``.
* ``--suite db``: Shoal's durable collection against Chroma and LanceDB, embedded (``bench/db_suite.py``);
  writes ``results-db.json``, ``results-db.md`` and ``db.png``.
* ``--suite served``: Shoal's gRPC server against Chroma's HTTP server (``bench/served_suite.py``);
  writes ``results-served.json`` and ``results-served.md``.

``--readme`` also copies the suite's report, JSON and plots to ``docs/bench/`` and regenerates the
README's results section from every suite's JSON found there (``report.readme_section``).
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Any

#: Presets: data size, queries, one-by-one queries, sweep density, filtered-benchmark size.
#: The filtered benchmark uses the whole run's rows (100k standard), so its collections are large enough
#: that the planner uses the index where it pays (and says where it does not). The db suite uses all of
#: GloVe (n None: 400k minus the queries), the served suite 100k rows.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n": 20_000, "queries": 200, "n_single": 50, "filtered_n": 20_000,
              "db_n": 20_000, "db_queries": 200, "db_filtered": 100, "served_n": 20_000, "served_queries": 300},
    "standard": {"n": 100_000, "queries": 1000, "n_single": 200, "filtered_n": 100_000,
                 "db_n": None, "db_queries": 500, "db_filtered": 200, "served_n": 100_000, "served_queries": 1000},
}
SUITES = ("index", "db", "served")

#: Size arguments each named data set's loader takes.
DATASET_ARGS = {"glove-50": ("n", "n_test"), "clustered": ("n", "n_test"), "minilm-pydoc": ("n", "n_test"),
                "digits": ("n_test",)}

#: Peers that filter natively (hnswlib callback, FAISS IDSelector) and the brute-force baseline.
FILTERED_PEERS = ("hnswlib:HNSW16", "faiss:HNSW32", "numpy:brute-subset")

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark recall/QPS of Shoal indices against FAISS, hnswlib, ...",
                       description="Recall/latency benchmark: Shoal indices and peer libraries on the same data, "
                                   "same threads, same k. Specs may use {nlist} and {m} placeholders.")
    p.add_argument("--suite", choices=SUITES, default="index",
                   help="index: indices vs index libraries; db: durable collection vs Chroma and LanceDB (embedded); "
                        "served: gRPC server vs Chroma's HTTP server (default index)")
    p.add_argument("--engines", default="shoal,chroma,lancedb",
                   help="databases of the db / served suites (missing packages are skipped with a message)")
    p.add_argument("--clients", default="1,4", help="concurrent client processes of the served suite (default 1,4)")
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


def _load(args: argparse.Namespace, n: int | None, queries: int) -> Any:
    from . import datasets

    sizes = {"n": n, "n_test": queries}
    data = datasets.load(args.dataset, **{k: sizes[k] for k in DATASET_ARGS.get(args.dataset, ())
                                          if sizes[k] is not None})
    if n is not None and data.train.shape[0] > n:
        data.train = data.train[:n]
        data.neighbors = None
    return data


def _write(args: argparse.Namespace, stem: str, payload: dict[str, Any], text: str) -> None:
    """``--out/<stem>.json`` and ``.md``; with ``--readme`` the same under docs/bench/ and the README section."""
    from . import report

    os.makedirs(args.out, exist_ok=True)
    report.write_json(os.path.join(args.out, f"{stem}.json"), payload)
    with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    if args.readme:
        os.makedirs(report.DOCS_DIR, exist_ok=True)
        report.write_json(os.path.join(report.DOCS_DIR, f"{args.suite}.json"), payload)
        with open(os.path.join(report.DOCS_DIR, f"{args.suite}.md"), "w") as f:
            f.write(text + "\n")
        if not report.update_readme("README.md", report.readme_section(report.DOCS_DIR)):
            print(f"README.md has no {report.README_BEGIN} … {report.README_END} markers; section not written")
    print(f"Results written to {args.out}/")


def run(args: argparse.Namespace) -> int:
    from ..engine.errors import InvalidArgumentError

    if args.suite == "db":
        return run_db(args)
    if args.suite == "served":
        return run_served(args)
    from . import datasets, report
    from .runners import DEFAULT_PEERS, DEFAULT_SHOAL, SkipRunner, expand_spec, make_runner
    from .suite import BenchConfig, default_filtered_specs, run_benchmark, run_filtered

    preset = PRESETS["quick" if args.quick else "standard"]
    n = args.n or preset["n"]
    queries = args.queries or preset["queries"]
    if n <= 0 or queries <= 0 or args.k <= 0 or args.threads <= 0:
        raise InvalidArgumentError("--n, --queries, -k and --threads must be positive")
    data = _load(args, n, queries)
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
               "preset": "quick" if args.quick else "standard",
               "dataset": {"name": data.name, "n_train": n_train, "dim": dim, "n_test": int(data.test.shape[0]),
                           "metric": data.metric, **{k: v for k, v in data.info.items() if isinstance(v, str)}},
               "results": records, "filtered": filtered, "skipped": skipped}
    plot_dirs = [args.out] + ([report.DOCS_DIR] if args.readme else [])
    for folder in plot_dirs:
        os.makedirs(folder, exist_ok=True)
        for key, suffix in (("qps_batch", "batch"), ("qps_single", "single")):
            report.plot(records, os.path.join(folder, f"{data.name}-{suffix}.png"), key,
                        f"{data.name}, k={args.k}, {args.threads} threads ({suffix} queries)")
    _write(args, "results", payload, report.report_markdown(payload))
    return 0


def _engines(args: argparse.Namespace) -> list[str]:
    return [e.strip().lower() for e in args.engines.split(",") if e.strip()]


def _check_sizes(args: argparse.Namespace) -> None:
    from ..engine.errors import InvalidArgumentError

    if (args.n is not None and args.n <= 0) or (args.queries is not None and args.queries <= 0) or args.k <= 0 \
            or args.threads <= 0:
        raise InvalidArgumentError("--n, --queries, -k and --threads must be positive")


def run_db(args: argparse.Namespace) -> int:
    """The database suite (see ``bench/db_suite.py``)."""
    from . import report
    from .db_suite import DbConfig, db_markdown, plot_db, run_db_suite

    _check_sizes(args)
    preset = PRESETS["quick" if args.quick else "standard"]
    queries = args.queries or preset["db_queries"]
    data = _load(args, args.n or preset["db_n"], queries)
    cfg = DbConfig(k=args.k, threads=args.threads, n_single=queries, n_filtered=min(queries, preset["db_filtered"]))
    print(f"{data.name}: {data.train.shape[0]:,} × {data.train.shape[1]} ({data.metric}), db suite, "
          f"engines {args.engines}")
    rows, skipped = run_db_suite(data, _engines(args), cfg)
    payload = {"machine": report.machine_info(args.threads), "k": args.k, "target": cfg.target,
               "preset": "quick" if args.quick else "standard", "n_single": cfg.n_single,
               "n_filtered": cfg.n_filtered, "dataset": _dataset_info(data), "rows": rows, "skipped": skipped}
    if rows:
        for folder in [args.out] + ([report.DOCS_DIR] if args.readme else []):
            os.makedirs(folder, exist_ok=True)
            plot_db(rows, os.path.join(folder, "db.png"),
                    f"{data.name}, {data.train.shape[0]:,} rows, durable, embedded, k={args.k}")
    _write(args, "results-db", payload, db_markdown(payload))
    return 0


def run_served(args: argparse.Namespace) -> int:
    """The served suite (see ``bench/served_suite.py``)."""
    from ..engine.errors import InvalidArgumentError
    from . import report
    from .served_suite import ServedConfig, run_served_suite, served_markdown

    _check_sizes(args)
    try:
        clients = tuple(int(c) for c in args.clients.split(","))
    except ValueError:
        raise InvalidArgumentError(f"--clients must be comma-separated integers, got {args.clients!r}") from None
    if not clients or min(clients) <= 0:
        raise InvalidArgumentError(f"--clients must be positive, got {args.clients!r}")
    preset = PRESETS["quick" if args.quick else "standard"]
    queries = args.queries or preset["served_queries"]
    data = _load(args, args.n or preset["served_n"], queries)
    cfg = ServedConfig(k=args.k, threads=args.threads, clients=clients, queries=queries)
    engines = [e for e in _engines(args) if e != "lancedb"]  # LanceDB has no server of its own
    rows, skipped = run_served_suite(data, engines, cfg)
    payload = {"machine": report.machine_info(args.threads), "k": args.k, "queries": queries,
               "preset": "quick" if args.quick else "standard", "dataset": _dataset_info(data),
               "rows": rows, "skipped": skipped}
    _write(args, "results-served", payload, served_markdown(payload))
    return 0


def _dataset_info(data: Any) -> dict[str, Any]:
    return {"name": data.name, "n_train": int(data.train.shape[0]), "dim": int(data.train.shape[1]),
            "n_test": int(data.test.shape[0]), "metric": data.metric}
