"""Stage `statistics` (docs/method.md §2): A, R, b, μ, σ of the dense features over the training set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..logs import progress
from ..statistics import AssignmentStatistics, StatisticsAccumulator
from .context import StageContext, StageSummary

NAME = "statistics"
SECTIONS: tuple[str, ...] = ()  #: depends only on the dense model


@dataclass(frozen=True)
class StatisticsSummary(StageSummary):
    num_samples: int
    num_features: int
    dead_features: int  #: features that never vary (σ < 1e-8)


def statistics_file(ctx: StageContext) -> Path:
    return ctx.work_dir(NAME) / "stats.npz"


@torch.inference_mode()
def compute_statistics(ctx: StageContext) -> StatisticsSummary:
    """One pass over the training set (test-time transforms) into DIR/statistics/stats.npz."""
    model = ctx.load_dense()
    acc = StatisticsAccumulator(model.backbone.num_features, len(ctx.class_names))
    for x, y in progress(ctx.loader("train"), NAME):  # this rank's share of the training set
        out = model.forward_all(x.to(ctx.device, non_blocking=True))
        acc.update(out.features, y, out.feature_maps)
    acc = acc.reduced(ctx.dist)  # the sums of every rank's share: the whole training set
    summary = ctx.dist.on_main(lambda: _finalize_and_save(ctx, acc))
    ctx.dist.barrier()
    return summary


def _finalize_and_save(ctx: StageContext, acc: StatisticsAccumulator) -> StatisticsSummary:
    stats = acc.finalize()
    stats.save(statistics_file(ctx))
    return StatisticsSummary(
        num_samples=stats.num_samples,
        num_features=int(stats.A.shape[0]),
        dead_features=int((stats.std < 1e-8).sum()),
    )


def load_statistics(ctx: StageContext) -> AssignmentStatistics:
    return AssignmentStatistics.load(statistics_file(ctx))
