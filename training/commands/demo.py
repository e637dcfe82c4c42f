"""The main job: train a QPM on the known-concept data end to end and show what it learned.

Runs `fit` on configs/demo.yaml (cached in the run folder like any fit), then prints dense vs
QPM accuracy, how well the features and the assignment recover the true concepts, the
calibrated prediction sets' coverage, and a few test images' predictions with their exact
explanations (and prediction sets); the images are kept in
RUN/examples/ and the figures in RUN/figures/ so the `qpm` commands can be tried on them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpm_zoo.formatting import format_table

from .options import add_override_argument

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="training config (default: configs/demo.yaml)",
    )
    add_override_argument(parser)
    parser.add_argument(
        "--examples", type=int, default=3, help="test images to predict and explain (default 3)"
    )
    parser.add_argument(
        "--no-figures", action="store_true", help="skip the figures (no matplotlib needed)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no log lines on the console (still in fit.log)"
    )


def save_examples(splits, out: Path, count: int | None = None) -> list[Path]:
    """The first test image of each class (or of the first `count` classes), as PNG files."""
    out.mkdir(parents=True, exist_ok=True)
    paths, seen = [], set()
    for index in range(len(splits.test)):
        image, label = splits.test[index]
        if label in seen:
            continue
        seen.add(label)
        name = splits.class_names[label].replace(" ", "_").replace("/", "_")
        path = out / f"test{index:04d}_{name}.png"
        image.save(path)
        paths.append(path)
        if len(paths) == (count or len(splits.class_names)):
            break
    return paths


def run(args: argparse.Namespace) -> int:
    from qpm_zoo.formatting import format_comparison, format_prediction
    from qpm_zoo.model import QPM
    from qpm_zoo.viz import most_similar_pair, write_figures

    from ..config import load_fit_config
    from ..logs import setup_logging
    from ..pipeline import FitRun
    from ..reports import metrics_table, summary_rows

    config = load_fit_config(args.config, args.overrides)
    setup_logging(args.out / "fit.log", quiet=args.quiet)
    run_folder = FitRun(config, args.out)
    summaries = run_folder.run()
    model_dir = args.out / "model"
    model = QPM.from_pretrained(model_dir)

    print("\n== Result " + "=" * 60)
    print(format_table(["result", "value"], summary_rows(summaries)))
    print()
    print(metrics_table(model.config.metrics))

    examples = save_examples(run_folder.context.data.splits, args.out / "examples")
    shown = examples[: args.examples]
    print(f"\n== {len(shown)} test images, each prediction with its exact explanation " + "=" * 10)
    calibrated = model.config.calibration
    coverage = calibrated.coverages[0] if calibrated is not None else None
    for prediction in model.predict(shown, coverage=coverage):
        print(format_prediction(prediction) + "\n")

    a, b = most_similar_pair(model)
    print("== The two most similar classes, feature by feature " + "=" * 18)
    print(format_comparison(model.compare(a, b)))

    if not args.no_figures:
        figures = write_figures(model, examples, args.out / "figures")
        print("\n== Figures " + "=" * 59)
        for name, path in figures.items():
            print(f"  {name}: {path}")

    example = examples[0] if examples else "IMAGE"
    print("\n== Try it " + "=" * 60)
    print(f"  .venv/bin/qpm predict {model_dir} {example}")
    print(f"  .venv/bin/qpm explain {model_dir} {example} --out explanation.png")
    print(f"  .venv/bin/qpm explain {model_dir} '{model.label_names[a]}'")
    print(f"  .venv/bin/qpm compare {model_dir} '{model.label_names[a]}' '{model.label_names[b]}'")
    if coverage is not None:
        print(f"  .venv/bin/qpm predict {model_dir} {example} --coverage {coverage:g}")
        print(
            f"  .venv/bin/qpm explain {model_dir} {example} --coverage {coverage:g} "
            "--out prediction_set.png"
        )
    print(f"  .venv/bin/python -m training evaluate {model_dir}")
    return 0
