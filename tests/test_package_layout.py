"""The package structure docs/architecture.md promises, read from the source (nothing imported):
qpm_zoo never imports the producer side, no import cycles, and each training command is a
module of its own that imports no other command."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from training.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("qpm_zoo", "training", "export")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    """module → the project modules it imports (at any depth in the file: a lazy import inside a
    function still makes the two modules depend on each other)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for name in names:
                # the longest project module the name starts with (a.b.c may be a.b's attribute)
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted.

    Edges into a package's own __init__ from its submodules are left out: importing
    `pkg.sub` runs `pkg/__init__.py` first by definition, so only real back-references count.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def edges(v: str) -> set[str]:
        return {w for w in graph[v] if not v.startswith(w + ".")}

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_cycle_detector_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "p": set(), "p.x": {"p"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("producer", ["training", "export"])
def test_library_never_imports_the_producer_side(producer):
    graph = import_graph()
    offending = sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        if m.split(".")[0] == "qpm_zoo"
        for t in targets
        if t.split(".")[0] == producer
    )
    assert offending == []


def test_commands_are_modules_of_their_own():
    graph = import_graph()
    commands = {m for m in COMMANDS.values() if importlib.util.find_spec(m) is not None}
    assert set(COMMANDS.values()) == commands, "a registered command module is missing"
    for module in commands:
        path = REPO / (module.replace(".", "/") + ".py")
        defined = {
            n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)
        }
        assert {"add_arguments", "run"} <= defined, module
        assert not graph[module] & commands, f"{module} imports another command"
