"""Compute every metric of a checkpoint and of its run's dense model, and record them in it.

Writes MODEL_DIR/metrics.json and the `metrics` of MODEL_DIR/config.json. The data comes from
the checkpoint's own training recipe unless --data names a training config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qpm_zoo.config import CONFIG_NAME
from qpm_zoo.formatting import print_json

from ..config import FitConfig
from ..errors import FitConfigError


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


def load_recipe(model_dir: Path, data_config: Path | None) -> FitConfig:
    """The fit config to evaluate with: --data's, or the one the checkpoint records."""
    if data_config is not None:
        return FitConfig.load(data_config)
    path = model_dir / CONFIG_NAME
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
    return FitConfig.from_training_record(training, source=f"{path} (training recipe)")


def run(args: argparse.Namespace) -> int:
    from ..data import check_dataset_files
    from ..logs import setup_logging
    from ..reports import metrics_table
    from ..stages import StageContext, evaluate_checkpoint

    config = load_recipe(args.model_dir, args.data)
    if args.device:
        config = config.with_device(args.device)
    check_dataset_files(config.data)
    setup_logging(None, quiet=args.json)
    # the checkpoint's run folder (its parent) holds the dense model when it came from `fit`
    context = StageContext.create(config, args.model_dir.parent)
    metrics = evaluate_checkpoint(context, args.model_dir, with_dense=not args.no_dense)
    if args.json:
        print_json(metrics)
    else:
        print(metrics_table(metrics))
        print(
            f"written: {args.model_dir / 'metrics.json'} and the metrics of {args.model_dir / CONFIG_NAME}"
        )
    return 0
