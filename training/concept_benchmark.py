"""The known-concept benchmark: one fit per training seed, every metric's mean and spread.

One run of the demo recipe says little (edge F1 0.86-0.95 between runs), so this fits the
same config with several values of `seed` (the training seed: initialisation, shuffling,
augmentation, the solver; the data stay those of `data.seed`), each in its own cached run
folder OUT/seed-S (a rerun with changed assignment settings reruns only the stages from the
assignment on), and aggregates what the evaluation recorded. Per seed it adds the counts the
issue is about: classes that use two features matched to one concept, and true concepts that
no selected feature matches, with their explanation (`training.duplicate_concepts`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import FitConfig
from .duplicate_concepts import (
    DuplicateReport,
    SweepPoint,
    dense_concept_auc,
    explain_duplicates,
    sweep_redundancy_weight,
)
from .errors import FitConfigError
from .stage_cache import write_json

#: (key, label) of every aggregated number, in table order; keys are the evaluation's flat
#: metric names (docs/method.md §6) plus `accuracy_ratio`, `duplicate_classes`, `missing_concepts`
METRICS: tuple[tuple[str, str], ...] = (
    ("dense_accuracy", "dense accuracy"),
    ("accuracy", "QPM accuracy"),
    ("accuracy_ratio", "QPM / dense accuracy"),
    ("concept_edge_precision", "concept edge precision"),
    ("concept_edge_recall", "concept edge recall"),
    ("concept_edge_f1", "concept edge F1"),
    ("pointing_game", "pointing game"),
    ("concept_auc", "concept AUC"),
    ("structural_grounding", "Structural Grounding"),
    ("duplicate_classes", "classes with 2 features of 1 concept"),
    ("missing_concepts", "true concepts no feature matches"),
)
#: the file OUT/benchmark.json: the per-seed values and their aggregate
RESULT_FILE = "benchmark.json"


def seed_dir(out: Path, seed: int) -> Path:
    return Path(out) / f"seed-{seed}"


@dataclass(frozen=True)
class SeedResult:
    """One seed's finished run: its metrics and why it has duplicates (if it has)."""

    seed: int
    run: str
    metrics: dict[str, float | None]
    duplicates: DuplicateReport
    sweep: tuple[SweepPoint, ...] = ()  #: --sweep-redundancy: assignments before fine-tuning

    def to_dict(self) -> dict:
        out = {
            "seed": self.seed,
            "run": self.run,
            "metrics": dict(self.metrics),
            "duplicates": self.duplicates.to_dict(),
        }
        if self.sweep:
            out["sweep"] = [p.to_dict() for p in self.sweep]
        return out


@dataclass(frozen=True)
class Aggregate:
    """Mean, sample standard deviation (n − 1; 0 for one seed), min and max over the seeds."""

    mean: float
    std: float
    min: float
    max: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Aggregate:
        x = np.asarray(values, dtype=np.float64)
        std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
        return cls(float(x.mean()), std, float(x.min()), float(x.max()), len(x))

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "count": self.count,
        }


@dataclass(frozen=True)
class BenchmarkResult:
    """What OUT/benchmark.json holds: the config, every seed's result, their aggregate."""

    config: str
    seeds: list[SeedResult]
    aggregate: dict[str, Aggregate] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "seeds": [s.seed for s in self.seeds],
            "aggregate": {key: a.to_dict() for key, a in self.aggregate.items()},
            "per_seed": [s.to_dict() for s in self.seeds],
        }


def aggregate(results: list[SeedResult]) -> dict[str, Aggregate]:
    """Each metric of METRICS that every seed has (a missing one, e.g. no Structural Grounding
    on data without attributes, is left out rather than averaged over fewer seeds)."""
    out = {}
    for key, _ in METRICS:
        values = [r.metrics.get(key) for r in results]
        if values and all(v is not None and math.isfinite(v) for v in values):
            out[key] = Aggregate.of(values)
    return out


def seed_configs(config: FitConfig, seeds: list[int]) -> list[FitConfig]:
    """One config per seed, all checked before any of them trains."""
    if len(set(seeds)) != len(seeds):
        raise FitConfigError(f"--seeds {' '.join(map(str, seeds))}: a seed is given twice")
    return [seed_config(config, seed) for seed in seeds]


def seed_config(config: FitConfig, seed: int) -> FitConfig:
    """The config with its training seed replaced (nothing else changes)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FitConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if config.data.name != "concepts":
        raise FitConfigError(
            f"data.name is {config.data.name!r}: the concept benchmark needs the known-concept "
            "data (data.name: concepts), whose true concepts it measures against"
        )
    copy = config.model_copy(update={"seed": seed})
    copy._source = config._source
    return copy


def run_seed(
    config: FitConfig,
    out: Path,
    dense_from: Path | None = None,
    sweep_weights: list[float] | None = None,
) -> SeedResult:
    """Fit (or resume) one seed's run folder and read its results back; with `sweep_weights`
    also solve the assignment on its statistics once per redundancy weight."""
    from .pipeline import FitRun

    fit_run = FitRun(config, out)
    if dense_from is not None:
        fit_run.reuse_dense(dense_from)
    fit_run.run()
    result = read_seed(fit_run)
    if sweep_weights:
        result = dataclasses.replace(result, sweep=tuple(sweep_seed(fit_run, sweep_weights)))
    return result


def sweep_seed(fit_run, weights: list[float]) -> list[SweepPoint]:
    """`sweep_redundancy_weight` on a finished run's statistics and dense AUCs."""
    from .stages.assignment import redundancy_matrix
    from .stages.statistics import load_statistics

    ctx = fit_run.context
    stats = load_statistics(ctx)
    a = ctx.config.assignment
    return sweep_redundancy_weight(
        stats.A,
        redundancy_matrix(ctx, stats),
        stats.b,
        stats.std,
        a.n,
        a.k,
        weights=weights,
        dense_auc=dense_concept_auc(fit_run.out, ctx),
        class_concepts=ctx.data.splits.ground_truth.class_concept_matrix(),
        time_limit=a.time_limit,
        seed=ctx.config.seed,
    )


def read_seed(fit_run) -> SeedResult:
    """A finished run's metrics and duplicate report (the dense AUCs computed once, cached)."""
    from .stages.assignment import redundancy_matrix
    from .stages.statistics import load_statistics

    ctx = fit_run.context
    out = fit_run.out
    record = json.loads((ctx.model_dir / "metrics.json").read_text())
    flat = dict(record["metrics"])
    ground = record["model"]["ground_truth"]
    truth = ctx.data.splits.ground_truth
    stats = load_statistics(ctx)
    assignment = json.loads((ctx.work_dir("assignment") / "result.json").read_text())
    feature_concept = np.asarray(ground["matching"]["feature_concept"], dtype=np.int64)
    # NaN (a concept in every image or none) is written as null
    feature_auc = np.array(
        [[-1.0 if v is None else v for v in row] for row in ground["matching"]["auc"]]
    )
    report = explain_duplicates(
        A=stats.A,
        R=redundancy_matrix(ctx, stats),
        b=stats.b,
        assignment=assignment,
        feature_concept=feature_concept,
        feature_auc=np.where(np.isfinite(feature_auc), feature_auc, -1.0),
        class_concepts=truth.class_concept_matrix(),
        class_names=list(ctx.class_names),
        concept_names=truth.concept_names,
        dense_auc=dense_concept_auc(out, ctx),
    )
    metrics = {key: flat.get(key) for key, _ in METRICS if key in flat}
    dense = flat.get("dense_accuracy")
    metrics["accuracy_ratio"] = flat["accuracy"] / dense if dense else None
    metrics["duplicate_classes"] = report.duplicate_classes
    metrics["missing_concepts"] = len(report.missing)
    return SeedResult(ctx.config.seed, str(out), metrics, report)


def write_result(result: BenchmarkResult, out: Path) -> Path:
    path = Path(out) / RESULT_FILE
    write_json(path, result.to_dict())
    return path
