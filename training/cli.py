"""The qpm-zoo producer pipeline: train, evaluate, compare and publish checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

from qpm_zoo.commands import run_commands

#: command name → module (training/commands/); each defines add_arguments(parser) and run(args).
#: tests/test_package_layout.py checks that every module exists and imports no other command.
COMMANDS: dict[str, str] = {
    "fit": "training.commands.fit",
    "demo": "training.commands.demo",
    "benchmark-concepts": "training.commands.benchmark_concepts",
    "evaluate": "training.commands.evaluate",
    "compare": "training.commands.compare",
    "calibrate": "training.commands.calibrate",
    "publish": "training.commands.publish",
    "import-authors": "training.commands.import_authors",
    "data": "training.commands.data",
    "solver-bench": "training.commands.solver_bench",
    "metrics-bench": "training.commands.metrics_bench",
    "data-bench": "training.commands.data_bench",
    "bench-train": "training.commands.bench_train",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_commands("python -m training", __doc__.splitlines()[0], COMMANDS, argv)
