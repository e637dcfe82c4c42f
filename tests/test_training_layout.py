"""The training package's layout: commands registered once and independent of each other, and
no import cycles (read from the source, nothing imported)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from training.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1] / "training"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The training modules `name` imports (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + [node.module or ""]).strip(".") if node.level else node.module
            submodules = [
                f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in modules
            ]
            found.update(submodules or [module])
    return {m for m in found if m in modules and m != name}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " → ".join((*trail[trail.index(name) :], name)))
        if name in done:
            return
        for dependency in sorted(graph[name]):
            visit(dependency, (*trail, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_commands_are_modules_of_their_own():
    modules = _modules()
    commands = {m for m in COMMANDS.values() if importlib.util.find_spec(m) is not None}
    assert {"training.commands.fit", "training.commands.data"} <= commands
    for module in commands:
        tree = ast.parse(modules[module].read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= defined, module
        imported = _imports(module, modules[module], modules) & commands
        assert not imported, f"{module} imports the command(s) {sorted(imported)}"
