"""Stage `calibrate` (docs/method.md §9): split-conformal thresholds for the checkpoint's
prediction sets, computed on the held-out split `data.calibration` asks for and measured on the
test split, recorded in config.json's `calibration`.

`calibrate_checkpoint` is the whole step for any checkpoint and pair of labelled splits; the
`calibrate` command uses it too (with a split of the run's data, the test split or a folder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qpm_zoo.calibration import LabelledLogits, calibrate_logits, score_function, with_calibration
from qpm_zoo.conformal import SetEvaluation
from qpm_zoo.explain import InterpretableModel

from ..config import ConformalSection
from ..logs import progress
from .context import StageContext, StageSummary

log = logging.getLogger("training")

NAME = "calibrate"
SECTIONS: tuple[str, ...] = ("data", "conformal")  #: the held-out split and the targets

#: images handed to the model's predict path at a time (it batches them itself)
_CHUNK = 256


@dataclass(frozen=True)
class CalibrationSummary(StageSummary):
    """What the stage measured, per coverage target (the checkpoint's record holds the same)."""

    score: str
    calibration_images: int
    calibration_split: str
    test_images: int | None
    targets: list[dict[str, Any]]


def dataset_logits(
    model: InterpretableModel, dataset: Any, source: str, batch_size: int, desc: str
) -> LabelledLogits:
    """The model's logits on a labelled ImageDataset, through the model's own predict path
    (its preprocessing, exactly as users' images go)."""
    chunks = []
    for start in progress(range(0, len(dataset), _CHUNK), desc):
        images = [dataset.image(i) for i in range(start, min(start + _CHUNK, len(dataset)))]
        chunks.append(model.predict_logits(images, batch_size=batch_size))
    return LabelledLogits(np.concatenate(chunks), np.asarray(dataset.labels), source)


def calibrate_checkpoint(
    model_dir: Path,
    model: InterpretableModel,
    calibration: LabelledLogits,
    test: LabelledLogits | None,
    settings: ConformalSection,
) -> tuple[CalibrationSummary, list[SetEvaluation]]:
    """Thresholds from `calibration`, measured on `test`, written into model_dir's config.json."""
    score = score_function(
        settings.score,
        settings.raps_lambda if settings.score == "raps" else None,
        settings.raps_k_reg if settings.score == "raps" else None,
    )
    record, evaluations = calibrate_logits(
        calibration, settings.coverage, score, model.label_names, test
    )
    with_calibration(model_dir, record)
    model.config = model.config.replace(calibration=record)
    summary = CalibrationSummary(
        score=record.score,
        calibration_images=record.images,
        calibration_split=record.split,
        test_images=record.test_images,
        targets=[t.to_dict() for t in record.targets],
    )
    return summary, evaluations


def calibrate_run(ctx: StageContext) -> CalibrationSummary:
    """The stage: the run's checkpoint on its calibration and test splits (rank 0 only)."""
    return ctx.dist.on_main(lambda: _calibrate_run(ctx))


def _calibrate_run(ctx: StageContext) -> CalibrationSummary:
    from qpm_zoo.model import QPM

    splits = ctx.data.splits
    model = QPM.from_pretrained(ctx.model_dir).to(ctx.device)
    batch = ctx.config.runtime.eval_batch_size
    held_out = dataset_logits(
        model, splits.calibration, f"val ({splits.calibration_source})", batch, "calibrate"
    )
    test = dataset_logits(model, splits.test, "test", batch, "calibrate: test")
    summary, evaluations = calibrate_checkpoint(
        ctx.model_dir, model, held_out, test, ctx.config.conformal
    )
    for e in evaluations:
        log.info(
            "calibrate: %.0f %% sets cover %.1f %% of the test images, %.2f classes on average "
            "(%.1f %% empty; worst class %.1f %%)",
            100 * e.coverage,
            100 * e.empirical_coverage,
            e.mean_size,
            100 * e.empty_share,
            100 * e.worst_class_coverage,
        )
    return summary
