"""Compare trained models side by side, e.g. QPM and Q-SENN on the same dense model.

Prints every metric recorded in their checkpoints, and whether they started from one dense model.

Each argument is a run folder (RUN/model is used) or a checkpoint folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpm_zoo.config import CONFIG_NAME, QPMConfig
from qpm_zoo.formatting import format_table, print_json

from ..reports import metric_labels
from ..stage_cache import read_stage_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="run folders or checkpoint folders"
    )
    parser.add_argument("--json", action="store_true", help="print {run: metrics} as JSON")


def checkpoint_dir(path: Path) -> Path:
    return path / "model" if (path / "model" / CONFIG_NAME).exists() else path


def dense_key(path: Path) -> str | None:
    """The dense stage's key of a run folder (equal keys: the same dense model)."""
    record = read_stage_record(path, "dense")
    return None if record is None else record.get("key")


def run(args: argparse.Namespace) -> int:
    configs = {str(path): QPMConfig.load(checkpoint_dir(path) / CONFIG_NAME) for path in args.runs}
    if args.json:
        print_json({name: {"model_type": c.model_type, **c.metrics} for name, c in configs.items()})
        return 0
    names = list(configs)
    merged: dict = {}
    for c in configs.values():
        merged.update(c.metrics)
    rows = [("model type", *(configs[n].model_type for n in names))]
    for key, label in metric_labels(merged).items():
        if any(key in configs[n].metrics for n in names):
            rows.append((label, *(configs[n].metrics.get(key) for n in names)))
        if key == "accuracy" and any("dense_accuracy" in configs[n].metrics for n in names):
            rows.append(
                ("Dense accuracy", *(configs[n].metrics.get("dense_accuracy") for n in names))
            )
    print(format_table(["metric", *names], rows))
    keys = {dense_key(Path(n)) for n in names}
    if len(names) > 1 and None not in keys:
        same = len(keys) == 1
        print(f"\nsame dense model: {'yes' if same else 'no (their dense stages differ)'}")
    return 0
