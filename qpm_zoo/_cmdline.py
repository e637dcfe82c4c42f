"""Small helpers shared by the command lines of the library, `training` and `export`."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from typing import Any


def _summary(module_name: str) -> str | None:
    """The first docstring line of a command module, read without importing it (keeps --help
    fast); None when the module does not exist."""
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        return None
    if spec is None or spec.origin is None:
        return None
    with open(spec.origin, encoding="utf-8") as fh:
        doc = ast.get_docstring(ast.parse(fh.read())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run_commands(prog: str, description: str, commands: dict[str, str], argv: Sequence[str] | None) -> int:
    """Parse `argv` for one of `commands` (name → module path) and run it.

    A command module defines `add_arguments(parser)` and `run(args) -> int`; the first line of
    its docstring is the command's help. Only the chosen command's module is imported.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in commands.items():
        summary = _summary(module_name)
        if summary is None:
            continue
        p = sub.add_parser(name, help=summary, description=summary)
        if argv and argv[0] == name:
            importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    return int(importlib.import_module(commands[args.command]).run(args) or 0)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g") -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""

    def cell(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return "-" if math.isnan(v) else format(v, floatfmt)
        return "-" if v is None else str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in text)
    return "\n".join(out)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
