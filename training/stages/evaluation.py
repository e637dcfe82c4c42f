"""Stage `evaluate` (docs/method.md §6): every metric of the checkpoint and of the run's dense model,
recorded in the checkpoint (MODEL_DIR/metrics.json and config.json's `metrics`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpm_zoo.config import CONFIG_NAME
from qpm_zoo.model import QPM

from ..model_metrics import SID_K, ModelEvaluation, concept_feature_names, evaluate_model
from ..runtime import Distributed
from ..stage_cache import write_json
from .context import StageContext, StageSummary

NAME = "evaluate"
SECTIONS: tuple[str, ...] = ()  #: depends only on the checkpoint


@dataclass(frozen=True)
class EvaluationSummary(StageSummary):
    """The flat metrics (recorded as they are: the stage's record is the metrics mapping)."""

    metrics: dict[str, Any]

    def to_dict(self) -> dict:
        return dict(self.metrics)

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationSummary:
        return cls(metrics=dict(data))


def evaluate_run(ctx: StageContext) -> EvaluationSummary:
    """The stage: the run's checkpoint, with its dense model. Under torchrun rank 0 evaluates
    the whole test set (exactly the metrics of one process) and the others wait for them."""
    single = dataclasses.replace(ctx, dist=Distributed())
    metrics = ctx.dist.on_main(lambda: evaluate_checkpoint(single, ctx.model_dir, with_dense=True))
    return EvaluationSummary(metrics)


def evaluate_checkpoint(
    ctx: StageContext, model_dir: Path, with_dense: bool = True
) -> dict[str, Any]:
    """All metrics of the checkpoint (and of this run's dense model when it has one), written
    into model_dir; returns the flat metrics (`accuracy`, ..., `dense_accuracy`, ...)."""
    model = QPM.from_pretrained(model_dir).to(ctx.device)
    # evaluate exactly as the model predicts
    ctx = dataclasses.replace(ctx, preprocessing=model.config.preprocessing)
    splits = ctx.data.splits
    truth = splits.ground_truth.as_seen(ctx.preprocessing) if splits.ground_truth else None
    train, test = ctx.loader("train"), ctx.loader("test")
    common = {
        "num_classes": len(splits.class_names),
        "class_attributes": splits.class_attributes,
        "sid_k": min(SID_K, model.config.k),  # the dense model is measured at the same k
    }
    final = evaluate_model(
        model, model.head.weight, train, test, ctx.device, ground_truth=truth, desc="qpm", **common
    )
    results: dict[str, ModelEvaluation] = {"model": final}
    if with_dense and ctx.has_dense():
        dense = ctx.load_dense()
        results["dense"] = evaluate_model(
            dense,
            dense.linear.weight,
            train,
            test,
            ctx.device,
            with_contrastiveness=False,
            desc="dense",
            **common,
        )
    metrics = dict(final.flat())
    if "dense" in results:
        metrics.update(results["dense"].flat("dense_"))
    changes: dict[str, Any] = {"metrics": {**model.config.metrics, **metrics}}
    if final.ground_truth is not None:
        changes["feature_names"] = tuple(
            concept_feature_names(final.ground_truth, truth.concept_names)
        )
    model.config.replace(**changes).save(Path(model_dir) / CONFIG_NAME)
    write_json(
        Path(model_dir) / "metrics.json",
        {"metrics": metrics, **{name: r.to_dict() for name, r in results.items()}},
    )
    return metrics
