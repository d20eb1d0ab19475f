"""Mutation testing of Shoal's core with cosmic-ray (``make mutation``; not part of ``make test``).

For each target below, cosmic-ray mutates one module (optionally only some of its functions)
one mutation at a time and runs only the tests that guard it; a mutant is *killed* when they
fail (or time out), *survives* when they pass. The score is killed / (killed + survived).

The tree is copied to ``.mutation/shoal`` first and mutated there, with ``PYTHONPATH`` putting
the copy ahead of the editable install, so an interrupted run can never leave a mutant in the
working tree and tests can go on in it meanwhile. Run it niced (the Makefile does: nice -n 19).
cosmic-ray creates the mutants and keeps the sessions; this script runs them: each mutant's
tests run in a fork of one process that has already imported pytest, hypothesis, numpy and
Numba (``run_forked``), which is most of a fast target's time per mutant.

    python tests/mutation/run.py                 # every target
    python tests/mutation/run.py planner status  # targets whose name contains a word
    python tests/mutation/run.py --list
    python tests/mutation/run.py wal --budget 600 --survivors

A target's session is resumed where it stopped unless ``--fresh`` (after a change to its module,
start it fresh); ``--survivors`` runs its survivors again (after adding tests); ``--budget``
bounds the seconds spent per target (the rest waits for the next run). Results:
``.mutation/<target>.sqlite`` (cosmic-ray sessions; ``cr-report`` reads them) and
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


#: Each target's fastest tests come first: with ``-x`` a mutant is killed by the first that fails.
_PLANNER_TESTS = "tests/engine/test_plan_segment.py tests/engine/test_planner.py -k 'not PQ'"
#: The multi-segment model tests first (seconds), then the planner's per-family index paths.
_SHARD_TESTS = "tests/engine/test_segments.py tests/engine/test_planner.py -k 'not PQ'"
TARGETS = (
    Target("filters", "engine/filters.py",  # the payload-index paths (estimate, index_rows, mask_at) too
           "tests/engine/test_filters.py tests/engine/test_payload_index.py tests/engine/test_records.py "
           "-k 'test_filters or test_payload_index or nested'"),
    Target("planner", "engine/planner.py", _PLANNER_TESTS),
    Target("id_tracker", "engine/id_tracker.py", "tests/engine/test_id_tracker.py tests/engine/test_segments.py"),
    Target("status", "rpc/status.py", "tests/rpc/test_status.py"),
    Target("hnsw_filtered", "index/hnsw.py", "tests/index/test_hnsw_filtered.py",
           ("HNSWIndex._search", "HNSWIndex._search_locked", "HNSWIndex._fall_back", "HNSWIndex._exact",
            "HNSWIndex.search_cost")),
    Target("manifest", "storage/manifest.py", "tests/storage/test_manifest.py"),
    Target("wal", "storage/wal.py",
           "tests/storage/test_wal.py tests/storage/test_io_errors.py -k 'test_wal or append or rollback or group_commit'"),
    Target("segment_files", "storage/segment_files.py", "tests/storage/test_manifest.py"),
    Target("segment", "engine/segment.py", _SHARD_TESTS),
    Target("shard", "engine/shard.py", _SHARD_TESTS,
           ("Shard.search", "Shard._select", "Shard._apply_upsert", "Shard.delete", "Shard._apply_delete",
            "Shard._delete_internal", "Shard._locate", "Shard.external_of", "Shard.records", "Shard.count")),
)


#: Survivors that are equivalent mutants (they change nothing any caller can observe), per target:
#: ``(text of the mutated line, end of the operator's name, why)``; matched on the line's text, not
#: its number, so the list survives edits elsewhere. The report counts them apart from the others.
_NEVER_USED = "a default no caller uses: the one caller ({}) always passes it"
_SCRATCH_ROWS = ("the kernels run as many walkers as the scratch has rows (search_batch's prange is over "
                 "visited.shape[0], search_serial reads row 0; a NUMBA_BOUNDSCHECK=1 run of the HNSW tests passes), "
                 "so a batch given one row walks every query on one thread and the serial walk leaves rows unused: "
                 "the same results, other parallelism (speed is measured in bench/, not tested)")
_EMPTY_ARRAYS = ("a new segment's arrays hold 1 row instead of 0: capacity is read from the vectors (0 rows), so "
                 "the first append replaces them all, and every read takes [:n]")
_VERSION_STAMP = ("the delete counter is only compared for equality with the stamps cached under it: any start and "
                  "any step make a delete invalidate the cached masks")
_ROWS_HINT = ("the matching rows offered to ExactSearcher.search are a hint: it computes the positions from the "
              "mask when not given a way to them: the same rows searched, only a cached flatnonzero more or fewer")
_MESSAGE_LENGTH = ("how many characters of a too-deep filter's path its error message keeps (199, 200 or 201): "
                   "the same error, class and place named")
_COMPLEX_BELOW_N = ("a column's complex rows are always below the store's length (MetadataStore.append sets a "
                    "row's values and counts it together): the same rows")
_ONE_PART = ("one child's rows through sorted_unique: they are sorted and unique already (Spans.rows, "
             "In.index_rows)")
_EARLY_RETURN = ("the early return only saves work: narrowing rows by no other child (an And of none allows every "
                 "row) or narrowing no rows gives the same rows")
_FULL_AT_LABEL_0 = ("a query whose k-th slot holds label 0 becomes a candidate, but the second filter "
                    "(found < min(k, allowed)) counts it full and drops it")
EQUIVALENT: dict[str, list[tuple[str, str, str]]] = {
    "wal": [
        ("sync_interval_ms: float =", "NumberReplacer", _NEVER_USED.format("engine/stores.py")),
        ("offset: int =", "NumberReplacer", _NEVER_USED.format("decode")),
        ("pos = _resync(data, pos", "", "resync from a byte earlier or later (pos-1, pos, pos+2): those bytes end "
         "the last good record's CRC or lie inside the damaged record, so no valid record starts there (two CRCs "
         "would have to match by chance)"),
        ("while pos <= len(data):", "Lt_LtE", "at the end of the data the next step finds a torn (empty) tail and "
         "stops the same way"),
        ("pos if pos < len(data) else len(data)", "LtE_Lt", "pos never passes the end: there both branches give "
         "len(data)"),
        ("_CRC.size)[ -1]", "NumberReplacer", "[-1] of a one-field struct is [0]"),
    ],
    "hnsw_filtered": [
        ("serial = q.shape[", "", "which kernel walks the batch (serial or the thread pool): the same walk per "
         "query, so the same results"),
        ("with threads_for_batch(q.shape[", "", "the exact fallback's thread limit: same results, other threads"),
        ("self._c0 if self._quant else", "NumberReplacer", "the codes' offset in a row, read only by a walk on "
         "codes (the float walk is given 0, 1 or -1 and ignores it)"),
        ("use_filter = allowed is not None or live <= n", "Lt_LtE", "with no filter and no deleted row the walk "
         "is given the live mask, which allows every row: the same walk, one mask read per node more"),
        ("self._visited(1 if not serial", "AddNot", _SCRATCH_ROWS),
        ("kernel = kernels.search_serial if not serial", "AddNot", "the kernels swapped: the serial one walks every "
         "query on row 0 of the batch's scratch, the batch one runs one walker on the serial call's single row: "
         "the same walk per query, so the same results"),
        ("self._visited( 2 if serial", "NumberReplacer", _SCRATCH_ROWS),
        ("out_ids[:, k - 1] < 1)", "NumberReplacer", _FULL_AT_LABEL_0),
        ("out_ids[:, k - 1] <= 0)", "Lt_LtE", _FULL_AT_LABEL_0),
        ("if rows.size == -1:", "NumberReplacer", "an exact search over no rows pads by itself "
         "(test_an_exact_answer_over_no_rows_is_padding passes under this mutant)"),
    ],
    "id_tracker": [
        ("keys.shape[ -1]", "NumberReplacer", "keys is 1-D: shape[-1] is shape[0]"),
        ("self.keys.shape[ -1]", "NumberReplacer", "the table is 1-D: shape[-1] is shape[0]"),
        ("if 3 * need > self.keys.shape[0]:", "NumberReplacer", "rehashing past a third instead of half full: "
         "the size chosen is the same (2 x live keys, at least 1024 slots), only the moment differs"),
        ("if 2 * need >= self.keys.shape[0]:", "Gt_GtE", "a rehash at exactly half full: the same lookups (a "
         "table sized for the live keys, tombstones dropped), only one rehash earlier"),
        ("max(at_least, 3)", "NumberReplacer", "at_least is never below _INITIAL_SLOTS (1024)"),
        ("max(at_least, 1)", "NumberReplacer", "at_least is never below _INITIAL_SLOTS (1024)"),
        ("query.shape[ -1]", "NumberReplacer", "query is 1-D: shape[-1] is shape[0]"),
        ("self.lookup([ext])[ -1]", "NumberReplacer", "the lookup of one id: [-1] is [0]"),
        ("out = np.full(len(ids), ", "", "every position is overwritten (int ids by the table's "
         "lookup, the others by dict.get(..., -1)): the fill value is never read"),
    ],
    "filters": [
        ("bounds) if len(at) > 0 else None", "NumberReplacer", "one range on a field through indexes.range is the "
         "child's own estimate (Range.estimate makes the same call), which never beats it (strict <): the same "
         "driver, the same rows"),
        ("bounds) if len(at) >= 1 else None", "Gt_GtE", "one range on a field through indexes.range: the child's "
         "own estimate, which never beats it (see the > 0 mutant above)"),
        ("(best is None or est <= best[0])", "Lt_LtE", "on equal estimates a later child drives the conjunction: "
         "the same rows, the others narrowing them at those rows"),
        ("if not rest and not rows.size:", "ReplaceOrWithAnd", _EARLY_RETURN),
        ("np.concatenate(parts)) if len(parts) > 0 else", "NumberReplacer", _ONE_PART),
        ("np.concatenate(parts)) if len(parts) >= 1 else", "Gt_GtE", _ONE_PART),
        ("(best is None or spans.count <= best[0])", "Lt_LtE", "on equal estimates the joined span of a field's "
         "ranges drives instead of one child: the same rows, the others narrowing them at those rows"),
        ("return clauses[0] if len(clauses) == 0 else", "NumberReplacer", "a one-clause filter compiles to an And of "
         "that one clause: the same mask, estimate and rows"),
        ("return ((r, r) for r in rows if r <= n)", "Lt_LtE", _COMPLEX_BELOW_N),
        ("return nodes[ -1] if len(nodes) == 1", "NumberReplacer", "a list of one node: [-1] is [0]"),
        ("if rows.size > 0:", "NumberReplacer", "sorted_unique of one row: the neighbour compare keeps it"),
        ("if rows.size >= 1:", "Gt_GtE", "sorted_unique of one row: the neighbour compare keeps it"),
        ("if len(parts) > 1 else parts[ -1]", "NumberReplacer", "a list of one part: [-1] is [0]"),
        ("(best is not None or spans.count < best[0])", "Is_IsNot", "the joined span of a field's ranges then "
         "always drives the conjunction: the children's estimates come from the same range index, so best is "
         "already set, and the span covers exactly those children: the same rows"),
        ("shorten(where, 20", "NumberReplacer", _MESSAGE_LENGTH),
        ("shorten(where, 19", "NumberReplacer", _MESSAGE_LENGTH),
        ("return clauses[ -1] if len(clauses) == 1", "NumberReplacer", "a list of one clause: [-1] is [0]"),
        ("out = np.zeros(kind.shape[ -1], bool)", "NumberReplacer", "kind is 1-D: shape[-1] is shape[0]"),
        ("if r <= len(store) and any(", "Lt_LtE", _COMPLEX_BELOW_N),
    ],
    "planner": [
        ("PARALLEL_EXACT_ROWS = ", "NumberReplacer", "the size from which an exact plan gets a pool thread of its "
         "own, one row more or fewer: which thread scans, not what it finds (the boundary itself is tested with "
         "the constant)"),
        ("len(heavy) < 1 or", "NumberReplacer", "one heavy plan through the pool path submits nothing to the pool "
         "(heavy[1:] is empty) and runs every plan on the caller, as the serial path does "
         "(test_heavy_plans_of_a_small_batch_run_side_by_side passes under this mutant)"),
    ],
    "status": [
        ("@functools.wraps(method)", "RemoveDecorator",
         "functools.wraps only copies the method's name and docstring onto the wrapper: nothing reads them "
         "(gRPC binds the class attribute; the error messages use the wrapped method's own name)"),
    ],
    "segment": [
        ("with threads_for_batch(q.shape[", "", "the exact scan's thread limit: same results, other threads"),
        ("if self.sealed and key is None:", "IsNot_Is", "turns the mask cache off (filters always come with "
         "their key): every search computes its mask again, with the same result"),
        ("MASK_CACHE = 3", "NumberReplacer", "the cache's size: one mask more or fewer kept, the same masks served "
         "(test_a_sealed_segment_caches_read_only_masks_least_recently_used_first checks the eviction order)"),
        ("self.norms = np.zeros( 1,", "NumberReplacer", _EMPTY_ARRAYS),
        ("self.live = np.zeros( 1,", "NumberReplacer", _EMPTY_ARRAYS),
        ("self._version = ", "NumberReplacer", _VERSION_STAMP),
        ("self._version += 2", "NumberReplacer", _VERSION_STAMP),
        ("if self.sealed or key is not None:", "ReplaceAndWithOr", "a growing segment also stores the masks it "
         "computes, but never reads them (_cached reads only on sealed segments): the same masks"),
        ("if self.sealed or key is not None else None", "ReplaceAndWithOr", "_cached would read a growing "
         "segment's cache too, but match stores masks only on sealed segments: it finds nothing there"),
        ("if hit[", "", _ROWS_HINT),  # matching_rows' test of its cached positions (any mutant of it)
        ("if not hit[3] is None:", "AddNot", _ROWS_HINT),
        ("rows_of = None if mask is", "", _ROWS_HINT),  # search_exact's offer of the cached positions
    ],
    "shard": [
        ("(slots == slots[ -1]).all()", "NumberReplacer", "all equal to the last is all equal to the first"),
        ("int(slots[ -1])", "NumberReplacer", "all slots are equal there: [-1] is [0]"),
        ("seg, _, rows = groups[ -1]", "NumberReplacer", "a list of one group: [-1] is [0]"),
        ("self.version += 2", "NumberReplacer", "the version only has to change: +2 is as new as +1"),
        ("(slots != slots[0]).all()", "Eq_NotEq", "skips the one-segment fast path: the general grouping gives the "
         "same groups"),
        ("tie = np.where(ids < -1,", "", "padding (-1) has distance inf, so it sorts last whatever its tie key"),
        ("tie = np.where(ids >= 0,", "", "segments are searched in slot order and each returns its ties in row "
         "order, so the stable sort by distance alone already orders ties by internal id"),
        ("if len(parts) == 0:", "", "one part through the merge: sorted again by (distance, id), it is the "
         "same part (see the tie key above)"),
        ("return self.records(internal, True", "", "external_of has records read payloads or vectors too and "
         "drops them: the same ids"),
        ("return self.records(internal, False, True)", "", "external_of has records read vectors too and "
         "drops them: the same ids"),
        ("k), - 2, np.int64)", "", "padding: any negative id reads as no hit"),
        ("k), ~1, np.int64)", "", "padding: any negative id reads as no hit"),
        ("return parts[ -1]", "NumberReplacer", "a list of one part: [-1] is [0]"),
        ("parts[0][ -1], plans", "NumberReplacer", "a part is (distances, ids): [-1] is [1]"),
        ("parts[ -1][1], plans", "NumberReplacer", "a list of one part: [-1] is [0]"),
        ("keep[pos] = False if mask is None", "ReplaceTrueWithFalse", "_select reaches it with a filter, and "
         "Segment.match returns a mask for every filter (None only for no filter): the branch is never taken"),
    ],
    "segment_files": [
        ("_CHUNK = 2 << 22", "NumberReplacer", "file_crc's read size: any positive size gives the same CRC"),
        ("_CHUNK = 1 << 23", "NumberReplacer", "file_crc's read size: any positive size gives the same CRC"),
        ("_CHUNK = 1 << 21", "NumberReplacer", "file_crc's read size: any positive size gives the same CRC"),
        ("load_index(seg_dir / INDEX, mmap=True", "ReplaceFalseWithTrue", "read or mapped, the index families "
         "copy an array before changing it: removing rows works and never reaches the file "
         "(test_a_read_index_is_the_segments_own_copy), and mapped arrays are checked the same way "
         "(test_an_index_read_into_memory_is_checked_array_by_array passes under this mutant)"),
        ('_load_npy(paths[entry["tomb"]], True)', "ReplaceFalseWithTrue", "the tombstone bitmap is unpacked into "
         "a new array at once: mapped or read, the result is the same"),
    ],
}


def equivalent_reason(target: str, operator: str, diff: str | None) -> str | None:
    changed = [line for line in (diff or "").splitlines()
               if line[:1] in ("+", "-") and line[1:].strip() and line[:3] not in ("+++", "---")]
    # the mutated line, or for a removal (a decorator dropped) the line removed
    mutated = next((line[1:].strip() for line in changed if line.startswith("+")),
                   next((line[1:].strip() for line in changed), ""))
    for text, op, why in EQUIVALENT.get(target, ()):
        if text in mutated and operator.endswith(op):
            return why
    return None


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
    out["PYTHONDONTWRITEBYTECODE"] = "1"
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


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are, in a module that never evaluates them
    (``from __future__ import annotations``): a mutant there (``int | None`` -> ``int & None``)
    changes nothing. Empty for other modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body)
    if not lazy:
        return []
    spans = []
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes.append(node.returns)
        elif isinstance(node, ast.arg):
            notes.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        spans += [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)) for a in notes if a]
    return spans


def skip_out_of_scope(session: Path, target: Target) -> int:
    """Mark mutants outside the target's functions, in docstrings or annotations, or of excluded
    operators as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    path = COPY / target.module
    ranges = line_ranges(path, target.functions) if target.functions else None
    docs = docstring_lines(path)
    notes = annotation_spans(path)
    skip = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            for m in item.mutations:
                line = m.start_pos[0]
                if (not kept_operator(m.operator_name) or line in docs
                        or any(lo <= tuple(m.start_pos) < hi for lo, hi in notes)
                        or (ranges is not None and not any(lo <= line <= hi for lo, hi in ranges))):
                    skip.append(item.job_id)
                    break
        if skip:
            db.set_multiple_results(skip, WorkResult(output="out of scope", worker_outcome=WorkerOutcome.SKIPPED))
    return len(skip)


#: What every mutant's test run imports and nothing mutated defines: imported once here, in the
#: parent, then each mutant runs in a fork of it (``run_forked``), so a mutant pays for its tests
#: and for importing shoal, not for starting Python, pytest, hypothesis, numpy and Numba (about 2 s of
#: a storage target's ~3 s per mutant). grpc is left out: its threads do not survive a fork.
PRELOAD = ("numpy", "numba", "numba.np.ufunc.parallel", "google_crc32c", "pytest", "hypothesis",
           "hypothesis.extra.numpy", "hypothesis.stateful", "asyncio", *PLUGINS)


def preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m == "shoal" or m.startswith(("shoal.", "tests.")))
    if leaked:  # a mutant's fork must import these fresh, from the mutated copy
        raise SystemExit(f"preloading imported {leaked[:5]}: a mutant would run against the unmutated code")


#: Exit code of a fork whose tests did not run against the mutated copy (no verdict on the mutant).
WRONG_COPY = 86


def run_forked(args: list[str], timeout: float, log_path: Path) -> tuple[int | None, str]:
    """``pytest.main(args)`` in a fork of this process: ``(exit code, output)``; code None on timeout.

    The child leads its own process group, so a timeout also kills what its tests started.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(COPY)
            sys.path[:0] = [str(COPY), str(WORK)]  # as ``python -m pytest`` in COPY with PYTHONPATH=WORK
            import pytest

            code = int(pytest.main(args))
            imported = getattr(sys.modules.get("shoal"), "__file__", None) or str(COPY)
            if not imported.startswith(str(COPY)):
                print(f"the tests imported shoal from {imported}, not from the mutated copy {COPY}")
                code = WRONG_COPY
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the loop
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = raw
        elif time.monotonic() > deadline:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return None, "timeout"
        else:
            time.sleep(0.02)
    output = log_path.read_text(encoding="utf-8", errors="replace")[-20_000:]
    return (os.waitstatus_to_exitcode(status), output)


def exec_session(session: Path, args: list[str], timeout: float, budget: float) -> None:
    """Run the session's pending mutants one by one (cosmic-ray applies and reverts each on disk)."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import _make_diff, use_mutation
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    stop = time.monotonic() + budget
    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = db.pending_work_items
        for done, item in enumerate(pending):
            if time.monotonic() > stop:
                print(f"  time budget spent: {len(pending) - done} mutants left (run again to resume)", flush=True)
                return
            (m,) = item.mutations
            operator = cosmic_ray.plugins.get_operator(m.operator_name)(**(m.operator_args or {}))
            path = COPY / m.module_path
            try:
                with use_mutation(path, operator, m.occurrence) as (original, mutated):
                    if mutated is None:
                        db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.NO_TEST))
                        continue
                    code, output = run_forked(args, timeout, WORK / "mutant.log")
            except Exception:  # noqa: BLE001 - cosmic-ray could not build this mutant (an operator's bug)
                import traceback

                db.set_result(item.job_id, WorkResult(output=traceback.format_exc(), test_outcome=TestOutcome.INCOMPETENT,
                                                      worker_outcome=WorkerOutcome.EXCEPTION))
                continue
            # 0: the tests pass. Killed: a test failed, they timed out (None), the mutant broke an import
            # (pytest's 2-4) or crashed the process (a signal). No verdict: no test ran (5) or the wrong copy.
            if code == 0:
                outcome = TestOutcome.SURVIVED
            else:
                outcome = TestOutcome.INCOMPETENT if code in (5, WRONG_COPY) else TestOutcome.KILLED
            db.set_result(item.job_id, WorkResult(output=output, diff="\n".join(_make_diff(original, mutated, path)),
                                                  test_outcome=outcome, worker_outcome=WorkerOutcome.NORMAL))
            if outcome == TestOutcome.SURVIVED:
                print(f"  survived: line {m.start_pos[0]} {m.operator_name} #{m.occurrence}", flush=True)


def reopen_survivors(session: Path, target: Target) -> int:
    """Make a session's surviving mutants that are not known equivalents (and those without a
    verdict) pending again, to re-run them against new tests."""
    from cosmic_ray.work_db import MutationSpecStorage, WorkDB, WorkResultStorage, use_db
    from cosmic_ray.work_item import TestOutcome

    with use_db(str(session), WorkDB.Mode.open) as db, db._session_maker.begin() as rows:
        found = rows.query(WorkResultStorage, MutationSpecStorage.operator_name).join(
            MutationSpecStorage, MutationSpecStorage.job_id == WorkResultStorage.job_id).filter(
            WorkResultStorage.test_outcome.in_([TestOutcome.SURVIVED, TestOutcome.INCOMPETENT])).all()
        again = [r for r, op in found if r.test_outcome == TestOutcome.INCOMPETENT
                 or not equivalent_reason(target.name, op, r.diff)]
        for r in again:
            rows.delete(r)
        return len(again)


def run_target(target: Target, fresh: bool, budget: float, survivors: bool = False) -> None:
    config = WORK / f"{target.name}.toml"
    session = WORK / f"{target.name}.sqlite"
    tests = target.tests
    args = [*shlex.split(PYTEST)[2:], *shlex.split(tests)]  # pytest's arguments (without "-m pytest")
    # A first run compiles the Numba kernels into this copy's cache (minutes when niced on a busy
    # machine), with no per-test timeout; the second, timed one sets the mutants' timeout.
    run_forked([*args, "--timeout=0"], 3600, WORK / "baseline.log")
    start = time.monotonic()
    code, output = run_forked(args, 3600, WORK / "baseline.log")
    baseline = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"{target.name}: the unmutated tests fail:\n{output[-4000:]}")
    timeout = max(30.0, 4 * baseline + 15)
    config.write_text(f'[cosmic-ray]\nmodule-path = "{target.module}"\ntimeout = {timeout:.0f}\n'
                      f'excluded-modules = []\ntest-command = {json.dumps(f"{sys.executable} {PYTEST} {tests}")}\n\n'
                      '[cosmic-ray.distributor]\nname = "local"\n', encoding="utf-8")
    if fresh or not session.exists():
        session.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(config), str(session)],
                       cwd=COPY, env=env(), check=True)
        skipped = skip_out_of_scope(session, target)
        print(f"[{target.name}] baseline {baseline:.1f}s, timeout {timeout:.0f}s, {skipped} mutants out of scope",
              flush=True)
    else:  # resume: the mutants not yet run (the module must be unchanged since the session began)
        again = f", {reopen_survivors(session, target)} survivors again" if survivors else ""
        print(f"[{target.name}] resuming {session.name} (baseline {baseline:.1f}s{again})", flush=True)
    exec_session(session, args, timeout, budget)


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
                why = equivalent_reason(target.name, m.operator_name, result.diff)
                survivors.append((m.start_pos[0], m.operator_name, m.occurrence, result.diff, why))
            else:
                killed += 1
        pending = len(db.pending_work_items)
    total = killed + len(survivors)
    equivalent = sum(1 for s in survivors if s[4])
    return {"name": target.name, "module": target.module, "killed": killed, "survived": len(survivors),
            "equivalent": equivalent, "incompetent": errors, "pending": pending,
            "score": killed / total if total else 1.0,
            "score_non_equivalent": killed / (total - equivalent) if total - equivalent else 1.0,
            "survivors": sorted(survivors, key=lambda s: s[:3])}


def write_report(results: list[dict]) -> Path:
    killed = sum(r["killed"] for r in results)
    total = killed + sum(r["survived"] for r in results)
    equivalent = sum(r["equivalent"] for r in results)
    lines = ["# Mutation testing (cosmic-ray)", "",
             f"Overall: {killed}/{total} killed = {killed / max(total, 1):.1%}; of the mutants that are not "
             f"equivalent ({equivalent} explained below): {killed / max(total - equivalent, 1):.1%}", "",
             "| target | module | killed | survived (equivalent) | incompetent | not run yet | score | "
             "score w/o equivalent |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['module']} | {r['killed']} | {r['survived']} ({r['equivalent']}) | "
              f"{r['incompetent']} | {r['pending']} | {r['score']:.1%} | {r['score_non_equivalent']:.1%} |"
              for r in results]
    for r in results:
        if r["survivors"]:
            lines += ["", f"## Survivors in {r['module']}", ""]
            for line, op, occ, diff, why in r["survivors"]:
                lines += [f"- line {line}, {op} #{occ}" + (f" — equivalent: {why}" if why else ""), "",
                          "```diff", (diff or "").strip(), "```"]
    path = WORK / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run the targets whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--fresh", action="store_true", help="start every chosen session again (else: resume)")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from the sessions in .mutation/")
    parser.add_argument("--survivors", action="store_true",
                        help="run the survivors again too (after adding tests; the module must be unchanged)")
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds to spend on each target's mutants (the rest resume next run)")
    args = parser.parse_args()
    names = {t.name for t in TARGETS}  # a target's exact name picks it alone ("segment", not "segment_files")
    chosen = list(TARGETS) if not args.only else [t for w in args.only for t in TARGETS
                                                  if (t.name == w if w in names else w in t.name)]
    chosen = list({t.name: t for t in chosen}.values())  # in the order asked, each once
    if args.list:
        for t in TARGETS:
            print(f"{t.name:14} {t.module:26} {t.tests}" + (f"  [{', '.join(t.functions)}]" if t.functions else ""))
        return
    WORK.mkdir(exist_ok=True)
    if not args.report:
        copy_tree()
        os.environ.update(env())  # the forks (and what their tests start) see the copy first
        sys.dont_write_bytecode = True  # a mutant and its revert can share a timestamp: no stale .pyc
        preload()
        for t in chosen:
            run_target(t, args.fresh, args.budget, args.survivors)
    results = [summarize(t, WORK / f"{t.name}.sqlite") for t in TARGETS if (WORK / f"{t.name}.sqlite").exists()]
    for r in results:
        print(f"{r['name']:14} killed {r['killed']:4}  survived {r['survived']:3} ({r['equivalent']} equivalent)  "
              f"not run {r['pending']:4}  score {r['score']:.1%} ({r['score_non_equivalent']:.1%} w/o equivalent)")
    print(f"report: {write_report(results)}")


if __name__ == "__main__":
    main()
