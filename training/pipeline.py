"""The QPM training pipeline (docs/method.md §1-§5) as cached stages in one run folder.

DIR/fit_config.json  the fit config the run was started with (training.config.FitConfig)
DIR/dense/           dense model (FDL) weights and history
DIR/statistics/      A, R, b, μ, σ over the training set (test-time transforms)
DIR/assignment/      the solver's result
DIR/finetune/        fine-tuning history (and its resume state while it runs)
DIR/qsenn/           Q-SENN's rounds (instead of statistics, assignment and finetune)
DIR/model/           the final checkpoint: QPM.from_pretrained(DIR/model)
DIR/calibrate/       (with data.calibration) nothing: the thresholds go into DIR/model/config.json
DIR/fit.log          the log; DIR/stages/*.json what finished, with which config

This module only orders the stages (training/stages/), caches and resumes them
(training/stage_cache.py); what a stage computes is in its own module.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from .config import FitConfig
from .errors import FitConfigError
from .runtime import Distributed
from .stage_cache import Stage, StageRunner, write_json
from .stages import assignment, calibration, dense, evaluation, finetune, qsenn, statistics
from .stages.context import StageContext

log = logging.getLogger("training")

#: the run folder's copy of its fit config (not config.json: that name is the checkpoint's)
FIT_CONFIG_NAME = "fit_config.json"
#: where earlier versions kept that copy; removed when such a run folder is resumed
LEGACY_FIT_CONFIG_NAME = "config.json"


class FitRun:
    """One run folder and the stages that fill it."""

    def __init__(self, config: FitConfig, out: Path, dist: Distributed | None = None):
        self.config = config
        self.out = Path(out)
        self.dist = dist or Distributed()
        self.context = StageContext.create(config, self.out, self.dist)  # the device first
        self.runner = StageRunner(
            self.out, lambda sections: config.fingerprint(*sections), self.dist
        )

    def stages(self) -> list[Stage]:
        """The stages of this config's model type, in the order they run; `calibrate` last,
        when the data config holds out a calibration split."""
        stages = self._training_stages()
        if self.config.data.calibration is not None:
            ctx = self.context
            stages.append(
                Stage(
                    calibration.NAME,
                    calibration.SECTIONS,
                    lambda: calibration.calibrate_run(ctx).to_dict(),
                )
            )
        return stages

    def _training_stages(self) -> list[Stage]:
        ctx = self.context
        first = Stage(dense.NAME, dense.SECTIONS, lambda: dense.train_dense(ctx).to_dict())
        last = Stage(
            evaluation.NAME, evaluation.SECTIONS, lambda: evaluation.evaluate_run(ctx).to_dict()
        )
        if self.config.model_type == "qsenn":
            return [
                first,
                Stage(
                    qsenn.NAME,
                    qsenn.SECTIONS,
                    lambda: qsenn.train_qsenn(ctx, self.dense_accuracy()).to_dict(),
                    outputs=("model",),
                ),
                last,
            ]
        return [
            first,
            Stage(
                statistics.NAME,
                statistics.SECTIONS,
                lambda: statistics.compute_statistics(ctx).to_dict(),
            ),
            Stage(assignment.NAME, assignment.SECTIONS, lambda: assignment.solve(ctx).to_dict()),
            Stage(
                finetune.NAME,
                finetune.SECTIONS,
                lambda: finetune.finetune(ctx, self.dense_accuracy()).to_dict(),
                outputs=("model",),
            ),
            last,
        ]

    def dense_accuracy(self) -> float | None:
        """The finished dense stage's test accuracy (recorded in the checkpoint's metrics)."""
        record = self.runner.read_record(dense.NAME)
        if record is None:
            return None
        return dense.DenseSummary.from_dict(record.get("summary", {})).test_accuracy

    def reuse_dense(self, other_run: Path) -> None:
        """Take the finished dense stage of another run folder trained with the same data, model
        and dense settings (e.g. to compare QPM and Q-SENN on the same dense model)."""
        self.dist.on_main(lambda: self._copy_dense(other_run))

    def _copy_dense(self, other_run: Path) -> None:
        other = StageRunner(Path(other_run), self.runner.fingerprint)
        record = other.read_record(dense.NAME)
        if record is None:
            raise FitConfigError(f"{other_run}: has no finished dense stage to reuse")
        if record.get("key") != self.runner.keys(self.stages()[:1])[dense.NAME]:
            raise FitConfigError(
                f"{other_run}: its dense model was trained with other data/model/dense settings "
                "than this config; it cannot be reused"
            )
        mine = self.runner.read_record(dense.NAME)
        if mine is not None and mine.get("key") == record.get("key"):
            return
        target = self.runner.work_dir(dense.NAME)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(other.work_dir(dense.NAME), target)
        self.runner.records_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(other.record_path(dense.NAME), self.runner.record_path(dense.NAME))
        log.info("dense: reused the dense model of %s", other_run)

    def record_config(self) -> Path:
        """Write DIR/fit_config.json (the config this run is continued with)."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / FIT_CONFIG_NAME
        write_json(path, self.config.to_dict())
        legacy = self.out / LEGACY_FIT_CONFIG_NAME
        if legacy.is_file():  # a run folder of older code: same stages, the copy renamed
            legacy.unlink()
        return path

    def run(self) -> dict[str, dict]:
        """Run what is not finished with this config; every stage's summary, by stage name."""
        if self.dist.is_main:
            self.record_config()
        if self.config.runtime.threads:
            torch.set_num_threads(self.config.runtime.threads)
        return self.runner.run(self.stages())
