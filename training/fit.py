"""Train a QPM (or Q-SENN) through every stage: dense → statistics → assignment → fine-tuning → metrics.

Stages are cached in the run folder: a rerun resumes after the last finished stage, and a
changed config field reruns only the stages from the first one it affects.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from qpm_zoo.formatting import format_table, print_json

from .config import FitConfig, FitConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", type=Path, help="training config (.yaml or .toml), e.g. configs/demo.yaml"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="run folder (created; reused to resume)"
    )
    add_override_argument(parser)
    parser.add_argument(
        "--dense-from",
        type=Path,
        metavar="RUN",
        help="reuse the finished dense model of another run with the same data/model/dense settings",
    )
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.add_argument(
        "--quiet", action="store_true", help="no log lines on the console (still in fit.log)"
    )


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set dense.epochs=2 (repeatable; VALUE is YAML)",
    )


def load_checked(path: Path, overrides: list[str]) -> FitConfig:
    """The config with its overrides, checked down to the dataset files (FitConfigError if not)."""
    try:
        config = FitConfig.load(path, parse_overrides(overrides))
        config.data.validate()
    except FitConfigError:
        raise
    except ValueError as e:  # the data section's own errors (DataConfigError)
        raise FitConfigError(str(e)) from None
    return config


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FitConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def summary_rows(summaries: dict[str, dict]) -> list[tuple[str, str]]:
    """The few numbers a person wants to see after a run."""
    rows = []
    dense = summaries.get("dense", {}).get("test_accuracy")
    final = (summaries.get("finetune") or summaries.get("qsenn") or {}).get("test_accuracy")
    if dense is not None:
        rows.append(("dense accuracy", f"{dense:.4f}"))
    if final is not None:
        rows.append(("final accuracy", f"{final:.4f}"))
    if dense and final is not None:
        rows.append(("final / dense", f"{final / dense:.3f}"))
    solve = summaries.get("assignment", {})
    if solve:
        gap = solve.get("gap")
        rows.append(
            (
                "assignment",
                (
                    f"objective {solve['objective']:.3f}, gap "
                    f"{'n/a' if gap is None else f'{100 * gap:.2f} %'}, {solve['status']}, {solve['wall_s']:.1f} s"
                ),
            )
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .pipeline import FitRun

    try:
        config = load_checked(args.config, args.overrides)
        fit_run = FitRun(config, args.out)
        if args.dense_from is not None:
            fit_run.reuse_dense(args.dense_from)
    except FitConfigError as e:
        print(f"python -m training fit: error: {e}", file=sys.stderr)
        return 2
    setup_logging(args.out / "fit.log", quiet=args.quiet)
    summaries = fit_run.run()
    result = {"run": str(args.out), "checkpoint": str(args.out / "model"), "stages": summaries}
    if args.json:
        print_json(result)
    else:
        print(format_table(["result", "value"], summary_rows(summaries)))
        print(
            f"checkpoint: {args.out / 'model'}  (QPM.from_pretrained or `qpm predict {args.out / 'model'} IMAGE`)"
        )
    return 0
