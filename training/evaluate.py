"""Compute every metric of a checkpoint and of its run's dense model, and record them in it.

Writes MODEL_DIR/metrics.json and the `metrics` of MODEL_DIR/config.json. The data comes from
the checkpoint's own training recipe unless --data names a training config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qpm_zoo.errors import QPMError
from qpm_zoo.formatting import format_table, print_json

from .config import FitConfig, FitConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", type=Path, metavar="MODEL_DIR", help="checkpoint folder (e.g. runs/demo/model)"
    )
    parser.add_argument(
        "--data", type=Path, metavar="CONFIG", help="training config whose data section to use"
    )
    parser.add_argument("--no-dense", action="store_true", help="skip the run's dense model")
    parser.add_argument("--device", default=None, help="torch device (default: the recipe's)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def metric_labels(metrics: dict) -> dict[str, str]:
    """Table labels of the metrics present (dense_ ones fold into their base row), in order."""
    from qpm_zoo.card import metric_info, metric_rank

    keys = sorted({k.removeprefix("dense_") for k in metrics}, key=lambda k: (metric_rank(k), k))
    return {k: metric_info(k).name for k in keys}


def metrics_table(metrics: dict) -> str:
    rows = []
    for key, label in metric_labels(metrics).items():
        final, dense = metrics.get(key), metrics.get(f"dense_{key}")
        if final is None and dense is None:
            continue
        rows.append((label, final, dense))
    return format_table(["metric", "model", "dense"], rows)


def load_recipe(model_dir: Path, data_config: Path | None) -> FitConfig:
    if data_config is not None:
        return FitConfig.load(data_config)
    path = model_dir / "config.json"
    try:
        training = json.loads(path.read_text()).get("training") or {}
    except FileNotFoundError:
        raise FitConfigError(f"{path}: not found; is {model_dir} a checkpoint folder?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise FitConfigError(f"{path}: cannot be read ({e})") from None
    if not training:
        raise FitConfigError(
            f"{path}: has no training recipe; pass --data CONFIG to say which data to use"
        )
    return FitConfig.from_dict(training, source=f"{path} (training recipe)")


def run(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .pipeline import FitRun

    try:
        config = load_recipe(args.model_dir, args.data)
        if args.device:
            from dataclasses import replace

            config = replace(config, runtime=replace(config.runtime, device=args.device))
        config.data.validate()
    except ValueError as e:  # FitConfigError and the data section's DataConfigError
        print(f"python -m training evaluate: error: {e}", file=sys.stderr)
        return 2
    setup_logging(None, quiet=args.json)
    # the checkpoint's run folder (its parent) holds the dense model when it came from `fit`
    run_folder = FitRun(config, args.model_dir.parent)
    try:
        metrics = run_folder.evaluate_checkpoint(args.model_dir, with_dense=not args.no_dense)
    except QPMError as e:
        print(f"python -m training evaluate: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print_json(metrics)
    else:
        print(metrics_table(metrics))
        print(
            f"written: {args.model_dir / 'metrics.json'} and the metrics of {args.model_dir / 'config.json'}"
        )
    return 0
