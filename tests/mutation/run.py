"""Mutation testing of Shoal's core with cosmic-ray (``make mutation``; not part of ``make test``).

For each target below, cosmic-ray mutates one module (optionally only some of its functions)
one mutation at a time and runs only the tests that guard it; a mutant is *killed* when they
fail (or time out), *survives* when they pass. The score is killed / (killed + survived).

The tree is copied to ``.mutation/shoal`` first and mutated there, with ``PYTHONPATH`` putting
the copy ahead of the editable install, so an interrupted run can never leave a mutant in the
working tree and tests can go on in it meanwhile. Run it niced (the Makefile does: nice -n 19).

    python tests/mutation/run.py                 # every target
    python tests/mutation/run.py planner status  # targets whose name contains a word
    python tests/mutation/run.py --list

A target's session is resumed where it stopped unless ``--fresh`` (after a change to its module
or its tests, start it fresh). Results: ``.mutation/<target>.sqlite`` (cosmic-ray sessions;
``cr-report`` reads them) and
``.mutation/report.md`` (score per target, every survivor with its diff).
"""
from __future__ import annotations

import argparse
import json
import ast
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Scratch directory (one per concurrent run: SHOAL_MUTATION_WORK=.mutation-b runs other targets beside).
WORK = Path(os.environ.get("SHOAL_MUTATION_WORK", ROOT / ".mutation")).resolve()
COPY = WORK / "shoal"
#: A fixed hypothesis seed: the same mutant meets the same examples in every run (reproducible scores).
PYTEST = "-m pytest --rootdir=tests -x -q -p no:cacheprovider --timeout=120 --hypothesis-seed=0"
#: Operators whose mutants are (nearly) always equivalent or not meaningful here:
#: variable insertion/replacement produce mostly invalid code that only measures crashes.
EXCLUDED_OPERATORS = ("core/VariableInserter", "core/VariableReplacer")
#: cosmic-ray replaces each binary/comparison operator with every other one (11 and 7 mutants per
#: site). We keep PIT's selection, which keeps the informative ones: a comparison becomes its
#: boundary twin and its negation (< -> <=, >=), an arithmetic operator its inverse (+ <-> -,
#: * <-> /). That cuts the run by about two thirds without hiding a class of fault.
KEEP_REPLACEMENTS = {
    "Lt": {"LtE", "GtE"}, "LtE": {"Lt", "Gt"}, "Gt": {"GtE", "LtE"}, "GtE": {"Gt", "Lt"},
    "Eq": {"NotEq"}, "NotEq": {"Eq"}, "Is": {"IsNot"}, "IsNot": {"Is"}, "In": {"NotIn"}, "NotIn": {"In"},
    "Add": {"Sub"}, "Sub": {"Add"}, "Mul": {"Div"}, "Div": {"Mul"}, "FloorDiv": {"Mul"}, "Mod": {"Mul"},
    "Pow": {"Mul"}, "BitAnd": {"BitOr"}, "BitOr": {"BitAnd"}, "BitXor": {"BitAnd"},
    "LShift": {"RShift"}, "RShift": {"LShift"},
}


def kept_operator(name: str) -> bool:
    """Whether a cosmic-ray operator (``core/ReplaceBinaryOperator_Add_Mul`` ...) is in the run."""
    if name.startswith(EXCLUDED_OPERATORS):
        return False
    kind = name.split("/")[-1]
    if kind.startswith(("ReplaceBinaryOperator_", "ReplaceComparisonOperator_")):
        _, src, dst = kind.split("_")
        return dst in KEEP_REPLACEMENTS.get(src, set())
    return True


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # path relative to the repository root
    #: pytest arguments selecting the fast tests that guard the module (shell words).
    tests: str
    #: Only mutate these functions/methods ("Class.method" or "function"); empty: the whole module.
    functions: tuple[str, ...] = field(default=())


_PLANNER_TESTS = ("tests/engine/test_planner.py -k 'not PQ' "
                  "tests/engine/test_shard.py::test_planner_path_at_every_selectivity "
                  "tests/engine/test_shard.py::test_planner_cost_model_picks_the_index_at_scale")
_SHARD_TESTS = ("tests/engine/test_collection.py tests/engine/test_planner.py -k 'not PQ' "
                "tests/engine/test_shard.py::test_optimize_keeps_results")
TARGETS = (
    Target("filters", "engine/filters.py", "tests/engine/test_filters.py"),
    Target("planner", "engine/planner.py", _PLANNER_TESTS),
    Target("id_tracker", "engine/id_tracker.py", "tests/engine/test_collection.py"),
    Target("status", "rpc/status.py", "tests/rpc/test_status.py"),
    Target("hnsw_filtered", "index/hnsw.py", "tests/index/test_hnsw_filtered.py",
           ("HNSWIndex._search", "HNSWIndex._exact", "HNSWIndex.search_cost")),
    Target("manifest", "storage/manifest.py", "tests/storage/test_manifest.py"),
    Target("wal", "storage/wal.py", "tests/storage/test_wal.py"),
    Target("segment_files", "storage/segment_files.py", "tests/storage/test_manifest.py"),
    Target("segment", "engine/segment.py", _SHARD_TESTS),
    Target("shard", "engine/shard.py", _SHARD_TESTS,
           ("Shard.search", "Shard._select", "Shard._apply_upsert", "Shard.delete", "Shard._apply_delete",
            "Shard._delete_internal", "Shard._locate", "Shard.external_of", "Shard.records", "Shard.count")),
)


def copy_tree() -> None:
    """The working tree as git sees it (tracked and untracked-but-not-ignored files)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    if COPY.exists():
        shutil.rmtree(COPY)
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            dest = COPY / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


#: The pytest plugins the tests use; the others installed (by langchain-tests and friends) are not
#: loaded, which halves the CPU time of each mutant's run (most of it is start-up).
PLUGINS = ("pytest_benchmark.plugin", "pytest_timeout", "_hypothesis_pytestplugin", "pytest_asyncio.plugin")


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(WORK) + os.pathsep + out.get("PYTHONPATH", "")
    out["NUMBA_CACHE_DIR"] = str(WORK / "numba_cache")  # kernels are not mutated: compiled once
    out["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    out["PYTEST_PLUGINS"] = ",".join(PLUGINS)
    return out


def line_ranges(path: Path, functions: tuple[str, ...]) -> list[tuple[int, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                found[name] = (child.lineno, child.end_lineno or child.lineno)
                visit(child, name + ".")

    visit(tree, "")
    missing = [f for f in functions if f not in found]
    if missing:
        raise SystemExit(f"{path}: no function(s) {missing}")
    return [found[f] for f in functions]


def docstring_lines(path: Path) -> set[int]:
    """Lines of docstrings (a mutated docstring changes nothing)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def skip_out_of_scope(session: Path, target: Target) -> int:
    """Mark mutants outside the target's functions, in docstrings, or of excluded operators as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    path = COPY / target.module
    ranges = line_ranges(path, target.functions) if target.functions else None
    docs = docstring_lines(path)
    skip = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            for m in item.mutations:
                line = m.start_pos[0]
                if (not kept_operator(m.operator_name) or line in docs
                        or (ranges is not None and not any(lo <= line <= hi for lo, hi in ranges))):
                    skip.append(item.job_id)
                    break
        if skip:
            db.set_multiple_results(skip, WorkResult(output="out of scope", worker_outcome=WorkerOutcome.SKIPPED))
    return len(skip)


def run_target(target: Target, fresh: bool) -> None:
    config = WORK / f"{target.name}.toml"
    session = WORK / f"{target.name}.sqlite"
    tests = target.tests
    command = [sys.executable, *shlex.split(PYTEST), *shlex.split(tests)]
    # A first run compiles the Numba kernels into this copy's cache (minutes when niced on a busy
    # machine), with no per-test timeout; the second, timed one sets the mutants' timeout.
    subprocess.run([*command, "--timeout=0"], cwd=COPY, env=env(), capture_output=True)
    start = time.monotonic()
    base = subprocess.run(command, cwd=COPY, env=env(), capture_output=True, text=True)
    baseline = time.monotonic() - start
    if base.returncode != 0:
        raise SystemExit(f"{target.name}: the unmutated tests fail:\n{base.stdout[-3000:]}{base.stderr[-2000:]}")
    timeout = max(30.0, 4 * baseline + 15)
    config.write_text(f'[cosmic-ray]\nmodule-path = "{target.module}"\ntimeout = {timeout:.0f}\n'
                      f'excluded-modules = []\ntest-command = {json.dumps(f"{sys.executable} {PYTEST} {tests}")}\n\n'
                      '[cosmic-ray.distributor]\nname = "local"\n', encoding="utf-8")
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    if fresh or not session.exists():
        session.unlink(missing_ok=True)
        subprocess.run([*cr, "init", str(config), str(session)], cwd=COPY, env=env(), check=True)
        skipped = skip_out_of_scope(session, target)
        print(f"[{target.name}] baseline {baseline:.1f}s, timeout {timeout:.0f}s, {skipped} mutants out of scope",
              flush=True)
    else:  # resume: the mutants not yet run (the module must be unchanged since the session began)
        print(f"[{target.name}] resuming {session.name}", flush=True)
    subprocess.run([*cr, "exec", str(config), str(session)], cwd=COPY, env=env(), check=True)


def summarize(target: Target, session: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed, survivors, errors = 0, [], 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
                errors += 1  # the mutant could not be applied or run (incompetent): not counted
            elif result.test_outcome == TestOutcome.SURVIVED:
                m = item.mutations[0]
                survivors.append((m.start_pos[0], m.operator_name, m.occurrence, result.diff))
            else:
                killed += 1
    total = killed + len(survivors)
    return {"name": target.name, "module": target.module, "killed": killed, "survived": len(survivors),
            "incompetent": errors, "score": killed / total if total else 1.0, "survivors": sorted(survivors)}


def write_report(results: list[dict]) -> Path:
    killed = sum(r["killed"] for r in results)
    total = killed + sum(r["survived"] for r in results)
    lines = ["# Mutation testing (cosmic-ray)", "",
             f"Overall: {killed}/{total} killed = {killed / max(total, 1):.1%}", "",
             "| target | module | killed | survived | incompetent | score |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['module']} | {r['killed']} | {r['survived']} | {r['incompetent']} | "
              f"{r['score']:.1%} |" for r in results]
    for r in results:
        if r["survivors"]:
            lines += ["", f"## Survivors in {r['module']}", ""]
            for line, op, occ, diff in r["survivors"]:
                lines += [f"- line {line}, {op} #{occ}", "", "```diff", (diff or "").strip(), "```"]
    path = WORK / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run the targets whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--fresh", action="store_true", help="start every chosen session again (else: resume)")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from the sessions in .mutation/")
    args = parser.parse_args()
    chosen = list(TARGETS) if not args.only else [t for w in args.only for t in TARGETS if w in t.name]
    chosen = list({t.name: t for t in chosen}.values())  # in the order asked, each once
    if args.list:
        for t in TARGETS:
            print(f"{t.name:14} {t.module:26} {t.tests}" + (f"  [{', '.join(t.functions)}]" if t.functions else ""))
        return
    WORK.mkdir(exist_ok=True)
    if not args.report:
        copy_tree()
        for t in chosen:
            run_target(t, args.fresh)
    results = [summarize(t, WORK / f"{t.name}.sqlite") for t in TARGETS if (WORK / f"{t.name}.sqlite").exists()]
    for r in results:
        print(f"{r['name']:14} killed {r['killed']:4}  survived {r['survived']:3}  score {r['score']:.1%}")
    print(f"report: {write_report(results)}")


if __name__ == "__main__":
    main()
