"""The package's layout: no module-level import cycles, and runtime code never imports the benchmark harness.

Read from the source with ``ast`` (nothing is imported): a module's import-time imports are those
outside function bodies and outside ``if TYPE_CHECKING:``; relative imports are resolved, and
``from pkg import name`` counts as importing ``pkg.name`` when that is a module. Importing
``a.b.c`` also runs the ``__init__`` of every package on the way that the importer is not itself
inside, so those are edges too (that is how a cycle closes through an ``__init__``).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "guidedinv"



def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements; with ``module_level`` only those that run when the module is imported."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            elif module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs when called, not when imported
            elif module_level and isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_one(other)
            else:
                visit(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        else:
            visit(node)

    visit(tree)
    return found


def targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package's modules that ``node`` (in module ``name``) imports, ancestors' __init__ included."""
    if isinstance(node, ast.Import):
        wanted = [alias.name for alias in node.names]
    else:
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known]
        # ``from . import sub`` inside a package needs only the submodule; a plain name needs the
        # package's __init__ to have defined it already
        needs_source = len(submodules) < len(node.names) or not _inside(name, source)
        wanted = submodules + ([source] if needs_source else [])
    out = set()
    for target in wanted:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != name and (i == len(parts) or not _inside(name, prefix)):
                out.add(prefix)
    return out


def _inside(name: str, package: str) -> bool:
    """Whether importing ``name`` has already started importing ``package`` (its ancestor)."""
    return name == package or name.startswith(package + ".")


def import_graph(module_level: bool = True) -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set().union(*[targets(name, is_package, n, known) for n in _imports(tree, module_level)])
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package is small enough to recurse
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = []
    for component in components:
        start = min(component)
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:  # breadth first inside the component: a shortest cycle
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & component):
                    if w == start:
                        cycle = paths[v] + [start]
                        break
                    if w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        out.append(cycle)
    return out


def test_graph_sees_relative_and_init_imports():
    graph = import_graph()
    assert "guidedinv.operators.base" in graph["guidedinv.operators.blur"]
    assert "guidedinv.operators.blur" in graph["guidedinv.operators"]  # from .blur import ... in an __init__
    assert "guidedinv.errors" in graph["guidedinv.operators.base"]  # from ..errors import ...


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "module-level import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_runtime_never_imports_the_bench_harness():
    graph = import_graph(module_level=False)  # lazy imports too: the harness stays out of the runtime path
    allowed = {name for name in graph if name == "guidedinv.bench" or name.startswith("guidedinv.bench.")}
    allowed.add("guidedinv.cli.bench")
    offenders = sorted(name for name, deps in graph.items() if name not in allowed
                       and any(d == "guidedinv.bench" or d.startswith("guidedinv.bench.") for d in deps))
    assert not offenders, f"runtime modules import guidedinv.bench: {offenders}"


def test_no_module_is_long_without_a_reason():
    """About 400 lines at most; the exceptions name their reason here."""
    reasons = {}
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / PACKAGE).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420}
    assert set(long) <= set(reasons), f"modules over 420 lines: {long}"
