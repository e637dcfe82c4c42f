"""Export qpm-zoo checkpoints (ONNX) and measure the exported models."""

from __future__ import annotations

from collections.abc import Sequence

from qpm_zoo.commands import run_commands

#: command name → module; each module defines add_arguments(parser) and run(args).
COMMANDS: dict[str, str] = {
    "onnx": "export.onnx_export",
    "bench": "export.bench",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_commands("python -m export", __doc__.splitlines()[0], COMMANDS, argv)
