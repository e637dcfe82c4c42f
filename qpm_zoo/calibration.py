"""Calibrating a model's prediction sets on labelled images (docs/method.md §9), torch-free.

`calibrate_logits` turns the logits of held-out labelled images into config.json's
`calibration` record (thresholds per coverage, and, given test images, the coverage and set
size measured on them); `labelled_images` reads an ImageFolder layout (one subfolder per
class); `with_calibration` writes the record into a checkpoint through the one atomic writer.
`calibrate_model` calibrates a loaded model in memory (what `qpm app --calibration DIR` does);
`python -m training calibrate` writes its record into the checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import CONFIG_NAME, Calibration, CoverageTarget, QPMConfig
from .conformal import (
    RAPS_K_REG,
    RAPS_LAMBDA,
    ScoreFunction,
    SetEvaluation,
    check_coverage,
    conformal_threshold,
    evaluate_sets,
    softmax,
)
from .errors import InputError, UsageError
from .preprocess import list_images

if TYPE_CHECKING:
    from .explain import InterpretableModel


@dataclass(frozen=True)
class LabelledLogits:
    """A model's logits on labelled images, and where the images come from."""

    logits: np.ndarray  #: [N, C]
    labels: np.ndarray  #: [N] class indices
    source: str  #: e.g. "val (generated)", "test", or a folder

    def __post_init__(self) -> None:
        if len(self.logits) != len(self.labels):
            raise ValueError(f"{len(self.logits)} logits for {len(self.labels)} labels")

    @property
    def probabilities(self) -> np.ndarray:
        return softmax(self.logits)


def score_function(
    name: str = "lac", raps_lambda: float | None = None, raps_k_reg: int | None = None
):
    """The ScoreFunction of `--method`, with RAPS's defaults where not given."""
    if name != "raps" and (raps_lambda is not None or raps_k_reg is not None):
        raise UsageError("--raps-lambda and --raps-k-reg apply to --method raps only")
    return ScoreFunction(
        name,
        RAPS_LAMBDA if raps_lambda is None else raps_lambda,
        RAPS_K_REG if raps_k_reg is None else raps_k_reg,
    )


def calibrate_logits(
    calibration: LabelledLogits,
    coverages: Sequence[float],
    score: ScoreFunction,
    label_names: Sequence[str],
    test: LabelledLogits | None = None,
) -> tuple[Calibration, list[SetEvaluation]]:
    """config.json's `calibration` record from held-out logits (one threshold per coverage),
    with the sets' measured behaviour on `test` when given (also returned, per coverage)."""
    coverages = sorted({check_coverage(c) for c in coverages})
    if not coverages:
        raise UsageError("give at least one coverage to calibrate, e.g. --coverage 0.9")
    true_scores = score.true_class_scores(calibration.probabilities, calibration.labels)
    targets, evaluations = [], []
    for coverage in coverages:
        threshold = conformal_threshold(true_scores, coverage)
        measured = {}
        if test is not None:
            e = evaluate_sets(test.probabilities, test.labels, score, threshold, coverage)
            evaluations.append(e)
            measured = {
                "test_coverage": e.empirical_coverage,
                "test_mean_size": e.mean_size,
                "test_empty_share": e.empty_share,
                "test_worst_class": label_names[e.worst_class],
                "test_worst_class_coverage": e.worst_class_coverage,
            }
        targets.append(CoverageTarget(coverage=coverage, threshold=threshold, **measured))
    raps = (
        {"raps_lambda": score.raps_lambda, "raps_k_reg": score.raps_k_reg}
        if score.name == "raps"
        else {}
    )
    tested = {} if test is None else {"test_images": len(test.labels), "test_split": test.source}
    record = Calibration(
        score=score.name,
        images=len(calibration.labels),
        split=calibration.source,
        targets=tuple(targets),
        **raps,
        **tested,
    )
    return record, evaluations


def labelled_images(
    model: InterpretableModel, folder: str | os.PathLike, option: str = "--split"
) -> list[tuple[Path, int]]:
    """(image, class index) from an ImageFolder layout: one subfolder per class, named by the
    class's label (or index). `option` names the command-line option in errors."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"{option} {root}: no such folder")
    pairs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            label = model.class_index(sub.name)
        except InputError as e:
            raise UsageError(
                f"{option} {sub}: the folder names no class of the model ({e})"
            ) from None
        pairs += [(path, label) for path in list_images(sub)]
    if not pairs:
        raise UsageError(f"{option} {root}: no images in class subfolders (CLASS/IMAGE.png)")
    return pairs


def folder_logits(
    model: InterpretableModel,
    folder: str | os.PathLike,
    batch_size: int = 16,
    option: str = "--split",
) -> LabelledLogits:
    """The model's logits on the labelled images of an ImageFolder layout."""
    pairs = labelled_images(model, folder, option)
    logits = model.predict_logits([str(p) for p, _ in pairs], batch_size=batch_size)
    return LabelledLogits(logits, np.array([y for _, y in pairs], dtype=np.int64), str(folder))


def calibrate_model(
    model: InterpretableModel,
    folder: str | os.PathLike,
    coverages: Sequence[float] = (0.9,),
    score: str = "lac",
    batch_size: int = 16,
    option: str = "--calibration",
) -> Calibration:
    """Calibrate `model` on the labelled images under `folder` (one subfolder per class) and
    use the thresholds from now on (`model.predict(..., coverage=C)`); nothing is written."""
    record, _ = calibrate_logits(
        folder_logits(model, folder, batch_size, option),
        coverages,
        score_function(score),
        model.label_names,
    )
    model.config = model.config.replace(calibration=record)
    return record


def with_calibration(model_dir: str | os.PathLike, record: Calibration) -> QPMConfig:
    """Write `record` as the checkpoint's `calibration` via the atomic checkpoint writer, every
    other file kept as it is but the model card (README.md), which is rendered again when there
    is one so that it shows the new sets; returns the new config."""
    from .card import render_model_card
    from .checkpoint import README_NAME, write_checkpoint

    folder = Path(model_dir)
    config = QPMConfig.load(folder / CONFIG_NAME).replace(calibration=record)
    kept = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    card = {README_NAME: render_model_card(config)} if README_NAME in kept else {}
    write_checkpoint(folder, config, files=card, keep=kept)
    return config
