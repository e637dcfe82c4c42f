"""Train a QPM (or Q-SENN) through every stage: dense → statistics → assignment → fine-tuning → metrics.

Stages are cached in the run folder: a rerun resumes after the last finished stage, and a
changed config field reruns only the stages from the first one it affects. Under
`torchrun --nproc_per_node N -m training fit ...` every stage runs on N processes (rank 0
logs, prints and writes the run folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpm_zoo.formatting import format_table, print_json

from .options import add_override_argument


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


def run(args: argparse.Namespace) -> int:
    from ..config import load_fit_config
    from ..logs import setup_logging
    from ..pipeline import FitRun
    from ..reports import summary_rows
    from ..runtime import Distributed, resolve_device

    config = load_fit_config(args.config, args.overrides)
    dist = Distributed.from_env()
    dist.init(resolve_device(config.runtime.device, dist.local_rank))
    try:
        fit_run = FitRun(config, args.out, dist)
        if dist.is_main:
            setup_logging(args.out / "fit.log", quiet=args.quiet)
        if args.dense_from is not None:
            fit_run.reuse_dense(args.dense_from)
        summaries = fit_run.run()
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    result = {"run": str(args.out), "checkpoint": str(args.out / "model"), "stages": summaries}
    if args.json:
        print_json(result)
    else:
        print(format_table(["result", "value"], summary_rows(summaries)))
        print(
            f"checkpoint: {args.out / 'model'}  (QPM.from_pretrained or `qpm predict {args.out / 'model'} IMAGE`)"
        )
    return 0
