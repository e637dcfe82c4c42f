"""The qpm-zoo producer pipeline: train, evaluate, compare and publish checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

from qpm_zoo.commands import run_commands

#: command name → module; each module defines add_arguments(parser) and run(args).
COMMANDS: dict[str, str] = {
    "fit": "training.fit",
    "demo": "training.demo",
    "evaluate": "training.evaluate",
    "compare": "training.compare",
    "publish": "training.publish",
    "import-authors": "training.import_authors",
    "data": "training.data.__main__",
    "solver-bench": "training.solver.bench",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_commands("python -m training", __doc__.splitlines()[0], COMMANDS, argv)
