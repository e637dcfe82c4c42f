"""The one command mechanism of `qpm`, `python -m training` and `python -m export`: subcommands
registered by module path (imported only when chosen) or as Command objects, and errors caught
in one place."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# Before torch loads OpenMP (every command module imports this one first): on small, busy
# machines spinning OpenMP threads make small tensor work many times slower. An explicit
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import QPMError


@dataclass(frozen=True)
class Command:
    """A subcommand defined in the program's own module (rather than a module of its own)."""

    summary: str  #: one line, for the program's --help
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None  #: the command's own --help text (default: the summary)


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


def run_commands(
    prog: str,
    description: str,
    commands: Mapping[str, str | Command],
    argv: Sequence[str] | None,
    version: str | None = None,
) -> int:
    """Parse `argv` for one of `commands` and run it; `version` adds a --version option.

    A command is a Command, or the path of a module that defines `add_arguments(parser)` and
    `run(args) -> int` and whose docstring's first line is the command's help. Only the chosen
    command's module is imported.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if version is not None:
        parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in commands.items():
        if isinstance(command, Command):
            p = sub.add_parser(
                name, help=command.summary, description=command.description or command.summary
            )
            command.add_arguments(p)
            continue
        summary = _summary(command)
        if summary is None:
            continue
        p = sub.add_parser(name, help=summary, description=summary)
        if argv and argv[0] == name:
            importlib.import_module(command).add_arguments(p)
    args = parser.parse_args(argv)
    chosen = commands[args.command]

    def run() -> int | None:
        action = chosen.run if isinstance(chosen, Command) else importlib.import_module(chosen).run
        return action(args)

    return run_guarded(f"{prog} {args.command}", run)


def run_guarded(name: str, action: Callable[[], int | None]) -> int:
    """Run a command's action: a QPMError (an error the product raises on purpose) becomes one
    line on stderr and exit status 2, Ctrl-C exits 130, and a closed pipe (`... | head`) ends
    quietly, as command-line tools do."""
    try:
        return int(action() or 0)
    except QPMError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
