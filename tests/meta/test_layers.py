"""The project's import structure: layers that only point down, and no import cycles.

Data flows spec -> reference -> adapters -> harness -> reports (docs/DESIGN.md).  This
module reads every source file's imports with :mod:`ast` (top-level and function-level
alike: a lazy import is still a dependency) and checks the layer rules, so a backward
import fails here instead of being found by a reviewer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where each package's files live in the repository (the package reaches reference/ and
# adapters/ through symlinks; walk the real folders once).
SOURCES = {"klconform.reference": ROOT / "reference", "klconform.adapters": ROOT / "adapters",
           "klconform": ROOT / "klconform"}


def _module_name(package: str, base: Path, path: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([package, *parts])


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package, base in SOURCES.items():
        for path in sorted(base.rglob("*.py")):
            if package == "klconform" and path.relative_to(base).parts[0] in ("reference", "adapters"):
                continue   # the symlinks: their real folders are walked above
            out[_module_name(package, base, path)] = path
    return out


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    if not _is_package(path):
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: str, *, top_level_only: bool = False) -> set[str]:
    """The klconform modules ``module`` imports (names resolved to modules in MODULES)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:   # module level includes `if TYPE_CHECKING`-free try/if blocks
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    found: set[str] = set()
    for node in nodes:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            # the longest prefix that is one of our modules
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in MODULES:
                    if cand != module:
                        found.add(cand)
                    break
    return found


def _layer(module: str) -> str:
    if module.startswith("klconform.reference"):
        return "reference"
    if module.startswith("klconform.adapters"):
        return "adapters"
    if module.startswith("klconform.report"):
        return "report"
    if module in ("klconform.cli", "klconform.__main__", "klconform.pytest_plugin"):
        return "cli"   # the front ends: command line and pytest plugin
    return "harness"


# What each layer may import from the project (besides itself and the package root).
ALLOWED = {
    "reference": {"reference"},
    "adapters": {"adapters", "klconform.reference.family", "klconform.reference.dtypes"},
    "harness": {"reference", "adapters", "harness"},
    "report": {"reference", "harness", "report"},
    "cli": {"reference", "adapters", "harness", "report", "cli"},
}
# Reports read results: never a worker, a registry or the engine that produces them.
REPORT_FORBIDDEN = {"klconform.workers", "klconform._worker_remote", "klconform.registry", "klconform.engine"}


def _allowed(src: str, dst: str) -> bool:
    if dst == "klconform":
        return True
    allowed = ALLOWED[_layer(src)]
    return _layer(dst) in allowed or dst in allowed


def test_the_scanner_sees_the_project():
    """A guard on the scanner itself: it finds the modules and the imports we know exist."""
    assert {"klconform.engine", "klconform.reference.evaluate", "klconform.adapters.base"} <= set(MODULES)
    assert "klconform.reference.family" in imports_of("klconform.adapters.base")
    assert "klconform.reference.evaluate" in imports_of("klconform.reference")
    assert not any(m.startswith("klconform.reference.reference") for m in MODULES)
    # the rules reject the backward imports this project once had
    assert not _allowed("klconform.reference.bounds", "klconform.case")
    assert not _allowed("klconform.adapters.base", "klconform.reference.evaluate")
    assert not _allowed("klconform.engine", "klconform.report.summary")
    assert _allowed("klconform.report.summary", "klconform.reference.evaluate")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    bad = sorted(d for d in imports_of(module) if not _allowed(module, d))
    if _layer(module) == "report":
        bad += sorted(imports_of(module) & REPORT_FORBIDDEN)
    assert not bad, f"{module} ({_layer(module)} layer) imports {bad}"


def _cycle() -> list[str] | None:
    graph = {m: imports_of(m, top_level_only=True) for m in MODULES}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for m, deps in graph.items():
        if MODULES[m].name == "__init__.py":
            graph[m] = {d for d in deps if not d.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_at_module_level():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
