"""The package's layering, checked from the source (ast), so a violation fails ``make test``.

Contracts (README, Architecture; HELPERS "Layout is fixed"):

* ``storage`` (file formats) imports no engine object: of ``engine`` it may use only the
  error hierarchy every layer shares (``engine.errors``);
* ``rpc`` (protocol, server, SDK) does not import ``rag``, except the modules listed in
  ``RPC_RAG_BRIDGE``, which serve and call the RAG ``Query`` service;
* kernels (``*/kernels/*``) import no orchestration: of shoal only other kernels and leaf
  helpers (``LEAF_HELPERS``: thread limits, device memory, errors, which import nothing of
  shoal but each other); numpy, numba, cupy and the standard library freely;
* no import cycles among module-level imports (imports inside functions and under
  ``if TYPE_CHECKING`` run later or never, so they cannot deadlock an import).

Every import counts for the contracts, lazy ones included: a lazy import still ties the layers.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "shoal"
SKIP_DIRS = {"tests", ".venv", "build", "docs", ".numba_cache", "mutants", ".mutation"}

#: rpc modules that bridge to rag on purpose (the RAG Query service and its client/CLI flags).
#: Moving them under rag/ would make the contract exceptionless; until then they are named here
#: so that no other rpc module starts depending on rag unnoticed.
RPC_RAG_BRIDGE = {"shoal.rpc.query_service", "shoal.rpc.query_client", "shoal.rpc.cli"}
#: Non-kernel modules a kernel may import: each imports nothing of shoal but another of these (checked).
LEAF_HELPERS = {"shoal.engine.threads", "shoal.engine.device", "shoal.engine.errors",
                "shoal.rag.models.ops"}  # array math shared by the model code and the attention kernels


@dataclass(frozen=True)
class Import:
    target: str  # the imported module (or the package whose name was imported)
    line: int
    top_level: bool  # executed when the importing module is imported


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP_DIRS or any(p.startswith(".") for p in rel.parts):
            continue
        out[_module_name(path)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[Import, ...]:
    path = modules()[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []
    known = modules()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            top = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, top)
            for child in node.body:
                visit(child, False)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(alias.name, node.lineno, top))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in known else base, node.lineno, top))
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    visit(tree, True)
    return tuple(found)


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(sources: str, allowed) -> list[str]:  # noqa: ANN001
    bad = []
    for module in sorted(modules()):
        if not _inside(module, sources):
            continue
        for imp in imports_of(module):
            if not allowed(module, imp.target):
                bad.append(f"{modules()[module].relative_to(ROOT)}:{imp.line} imports {imp.target}")
    return bad


def test_the_scan_sees_the_package() -> None:
    """Guards the checks below against passing on an empty or misread tree."""
    names = modules()
    for expected in ("shoal.engine.collection", "shoal.storage.wal", "shoal.rpc.server",
                     "shoal.index.kernels.hnsw_numba", "shoal.rag.pipeline"):
        assert expected in names
    assert any(i.target == "shoal.engine.errors" and i.top_level for i in imports_of("shoal.storage.wal"))
    lazy = [i for i in imports_of("shoal.storage.segment_files") if i.target == "shoal.index.io"]
    assert lazy and not lazy[0].top_level  # an import inside a function is seen, as lazy


def test_storage_imports_no_engine_objects() -> None:
    def allowed(_: str, target: str) -> bool:
        return not _inside(target, "shoal.engine") or target == "shoal.engine.errors"

    assert _violations("shoal.storage", allowed) == []


def test_rpc_does_not_import_rag() -> None:
    def allowed(module: str, target: str) -> bool:
        return not _inside(target, "shoal.rag") or module in RPC_RAG_BRIDGE

    assert _violations("shoal.rpc", allowed) == []


def _is_kernel(module: str) -> bool:
    return ".kernels" in module


@pytest.mark.parametrize("package", ["shoal.index.kernels", "shoal.quant.kernels", "shoal.rag.kernels"])
def test_kernels_import_no_orchestration(package: str) -> None:
    def allowed(_: str, target: str) -> bool:
        return not _inside(target, PACKAGE) or _is_kernel(target) or target in LEAF_HELPERS

    assert _violations(package, allowed) == []


def test_leaf_helpers_are_leaves() -> None:
    for helper in sorted(LEAF_HELPERS):
        inner = [i.target for i in imports_of(helper) if _inside(i.target, PACKAGE)]
        assert set(inner) <= LEAF_HELPERS - {helper}, helper


def top_level_graph() -> dict[str, list[str]]:
    known = modules()
    return {m: sorted({i.target for i in imports_of(m) if i.top_level and i.target in known}) for m in known}


def import_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (more than one module, or a self-import) of an import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:  # Tarjan, iterative over an explicit stack of iterators
        nonlocal counter
        work = [(v, iter(graph[v]))]
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1 or node in graph[node]:
                        out.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            strong(m)
    return out


def test_no_import_cycles() -> None:
    assert import_cycles(top_level_graph()) == []


def test_cycle_detection_finds_cycles() -> None:
    """The detector itself: planted cycles are reported, a chain is not."""
    assert import_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert import_cycles({"a": ["a"], "b": []}) == [["a"]]
    assert import_cycles({"a": ["b"], "b": ["c"], "c": []}) == []
