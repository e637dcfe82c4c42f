"""Calibrate a checkpoint's prediction sets: split-conformal thresholds per coverage, in config.json.

RUN_OR_MODEL is a run folder (its fit_config.json gives the data), a checkpoint folder with a
training recipe (the recipe gives the data), or any checkpoint folder with --split FOLDER
(labelled images: one subfolder per class). --split val uses the held-out split of the data
config (`data.calibration`; --size N holds out N images the training did not use when the recipe
has none); --split test calibrates on the test split, which then no longer measures the sets.
The sets' coverage and average size are measured on the test split (or --test FOLDER) and
recorded beside the thresholds (docs/method.md §9).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qpm_zoo.config import CONFIG_NAME
from qpm_zoo.errors import UsageError
from qpm_zoo.formatting import format_table, print_json

from ..errors import FitConfigError

#: the run folder's copy of its fit config (training.pipeline.FIT_CONFIG_NAME)
_FIT_CONFIG = "fit_config.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        type=Path,
        metavar="RUN_OR_MODEL",
        help="run folder (RUN/model is calibrated) or checkpoint folder",
    )
    parser.add_argument(
        "--split",
        default="val",
        metavar="val|test|FOLDER",
        help="calibration images: the data config's held-out split (default), the test split, "
        "or a folder of labelled images (CLASS/IMAGE.png)",
    )
    parser.add_argument(
        "--coverage",
        type=float,
        nargs="+",
        metavar="C",
        help="coverages to calibrate (default: the recipe's conformal.coverage, or 0.9 0.95)",
    )
    parser.add_argument(
        "--method",
        choices=("lac", "aps", "raps"),
        help="nonconformity score (default: the recipe's conformal.score, or lac)",
    )
    parser.add_argument("--raps-lambda", type=float, help="with --method raps (default 0.01)")
    parser.add_argument("--raps-k-reg", type=int, help="with --method raps (default 5)")
    parser.add_argument(
        "--size",
        type=int,
        metavar="N",
        help="with --split val for a recipe without data.calibration: hold out N images the "
        "training did not use (generated ones, or those train_subset left out)",
    )
    parser.add_argument(
        "--test",
        type=Path,
        metavar="FOLDER",
        help="labelled images to measure the sets on (default: the recipe's test split)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: the recipe's, or cpu)"
    )
    parser.add_argument("--json", action="store_true", help="print the calibration record as JSON")


def _model_dir(target: Path) -> Path:
    if (target / "model" / CONFIG_NAME).is_file():
        return target / "model"
    if (target / CONFIG_NAME).is_file():
        return target
    raise UsageError(f"{target}: neither a run folder (RUN/model/config.json) nor a checkpoint")


def _recipe(target: Path, model_dir: Path):
    """The fit config that says where the data is: the run's, else the checkpoint's recipe;
    None for a checkpoint without one."""
    from qpm_zoo.config import QPMConfig

    from ..config import FitConfig

    run_config = target / _FIT_CONFIG
    if model_dir != target and run_config.is_file():
        return FitConfig.from_dict(json.loads(run_config.read_text()), source=str(run_config))
    training = QPMConfig.load(model_dir / CONFIG_NAME).training
    if not training:
        return None
    return FitConfig.from_training_record(training, source=f"{model_dir / CONFIG_NAME} (training)")


def _with_held_out(recipe, size: int | None):
    """The recipe's data config with a held-out split, refusing one that would take images
    the model was trained on."""
    data = recipe.data
    if data.calibration is not None:
        if size is not None and size != data.calibration:
            raise UsageError(
                f"--size {size}: the recipe already holds out data.calibration = "
                f"{data.calibration} images; calibrate on those (leave out --size)"
            )
        return data
    if size is None:
        raise UsageError(
            f"{recipe.source}: the data config holds out no calibration split "
            "(data.calibration); give --size N to hold out N images the training did not use, "
            "--split FOLDER for labelled images, or --split test"
        )
    if data.name != "concepts" and data.train_subset is None:
        raise UsageError(
            f"--size {size}: dataset '{data.name}' was trained on all its training images "
            "(no train_subset), so none are left to calibrate on; use --split FOLDER, or "
            "--split test, or retrain with data.calibration set"
        )
    return data.model_copy(update={"calibration": size})


def _settings(args: argparse.Namespace, recipe):
    from ..config import ConformalSection

    base = recipe.conformal if recipe is not None else ConformalSection()
    changes = {}
    if args.coverage:
        changes["coverage"] = tuple(args.coverage)
    if args.method:
        changes["score"] = args.method
    if (args.raps_lambda is not None or args.raps_k_reg is not None) and (
        changes.get("score", base.score) != "raps"
    ):
        raise UsageError("--raps-lambda and --raps-k-reg apply to --method raps only")
    if args.raps_lambda is not None:
        changes["raps_lambda"] = args.raps_lambda
    if args.raps_k_reg is not None:
        changes["raps_k_reg"] = args.raps_k_reg
    try:
        return ConformalSection.model_validate({**base.model_dump(), **changes})
    except ValueError as e:
        raise UsageError(f"--coverage/--method: {e}".splitlines()[0]) from None


def run(args: argparse.Namespace) -> int:
    from qpm_zoo.calibration import folder_logits
    from qpm_zoo.model import QPM

    from ..data import build_datasets, check_dataset_files
    from ..logs import setup_logging
    from ..runtime import resolve_device
    from ..stages.calibration import calibrate_checkpoint, dataset_logits

    if args.size is not None and args.size < 1:
        raise UsageError(f"--size must be a positive number of images, got {args.size}")
    model_dir = _model_dir(args.target)
    recipe = _recipe(args.target, model_dir)
    settings = _settings(args, recipe)
    split = args.split
    folder = split not in ("val", "test")
    if args.size is not None and split != "val":
        raise UsageError("--size holds out images for --split val only")
    if not folder and recipe is None:
        raise FitConfigError(
            f"{model_dir / CONFIG_NAME}: records no training recipe, so there is no '{split}' "
            "split; give labelled images: --split FOLDER (one subfolder per class)"
        )
    setup_logging(None, quiet=args.json)
    device = resolve_device(args.device or (recipe.runtime.device if recipe else "cpu"))
    model = QPM.from_pretrained(model_dir).to(device)
    batch = recipe.runtime.eval_batch_size if recipe is not None else 64

    splits = None
    if recipe is not None and (not folder or args.test is None):
        data = _with_held_out(recipe, args.size) if split == "val" else recipe.data
        check_dataset_files(data)
        splits = build_datasets(data)
    if split == "val":
        source = f"val ({splits.calibration_source})"
        held_out = dataset_logits(model, splits.calibration, source, batch, "calibrate")
    elif split == "test":
        print(
            "warning: calibrating on the test split; its measured coverage is then no held-out "
            "estimate (calibrate on --split val or a FOLDER to measure it)",
            file=sys.stderr,
        )
        held_out = dataset_logits(model, splits.test, "test", batch, "calibrate")
    else:
        held_out = folder_logits(model, split, batch, "--split")
    if args.test is not None:
        test = folder_logits(model, args.test, batch, "--test")
    elif splits is not None:
        test = dataset_logits(model, splits.test, "test", batch, "calibrate: test")
    else:
        test = None
    summary, _ = calibrate_checkpoint(model_dir, model, held_out, test, settings)
    if args.json:
        print_json(model.config.calibration.to_dict())
        return 0
    print(_table(summary))
    print(f"written: the calibration of {model_dir / CONFIG_NAME}")
    return 0


def _table(summary) -> str:
    rows = []
    for t in summary.targets:
        measured = t.get("test_coverage") is not None
        rows.append(
            (
                f"{t['coverage']:g}",
                round(t["threshold"], 4),
                round(100 * t["test_coverage"], 1) if measured else None,
                round(t["test_mean_size"], 2) if measured else None,
                round(100 * t["test_empty_share"], 1) if measured else None,
                f"{t['test_worst_class']} {100 * t['test_worst_class_coverage']:.1f}"
                if measured
                else None,
            )
        )
    test = f", measured on {summary.test_images} test images" if summary.test_images else ""
    head = (
        f"{summary.score} score, calibrated on {summary.calibration_images} images from "
        f"{summary.calibration_split}{test}"
    )
    table = format_table(
        [
            "coverage",
            "threshold",
            "test coverage %",
            "mean set size",
            "empty sets %",
            "worst class %",
        ],
        rows,
    )
    note = (
        "test coverage: of the sets as predict returns them (an empty set is a miss); "
        "qpm predict --never-empty fills empty sets, which only raises coverage"
    )
    return head + "\n" + table + "\n" + note
