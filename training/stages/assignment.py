"""Stage `assignment` (docs/method.md §3): the solver's n features and its k-per-class assignment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FitConfigError
from ..stage_cache import write_json
from .context import StageContext, StageSummary
from .statistics import load_statistics

NAME = "assignment"
SECTIONS = ("model_type", "assignment")
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class SolvedAssignment:
    """The assignment the QPM is built from, and what the solver proved about it."""

    selected: np.ndarray  #: [n] sorted feature indices of the dense model
    weight: np.ndarray  #: [C, n] binary: class c uses selected feature j
    objective: float
    bound: float | None
    gap: float | None
    status: str
    wall_s: float
    checks: dict[str, bool]
    solver: dict[str, Any] = field(default_factory=dict)  #: the rest of the solver's report

    @classmethod
    def from_report(cls, report: dict) -> SolvedAssignment:
        """From the solver's JSON report (AssignmentResult.to_dict())."""
        report = dict(report)
        return cls(
            selected=np.asarray(report.pop("selected"), dtype=np.int64),
            weight=np.asarray(report.pop("weight"), dtype=np.float32),
            **{name: report.pop(name) for name in _NUMBERS},
            solver=report,
        )

    def to_report(self) -> dict:
        return {
            "selected": [int(f) for f in self.selected],
            "weight": np.asarray(self.weight, dtype=int).tolist(),
            **{name: getattr(self, name) for name in _NUMBERS},
            **self.solver,
        }

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / RESULT_FILE, self.to_report())

    @classmethod
    def load(cls, folder: Path) -> SolvedAssignment:
        return cls.from_report(json.loads((Path(folder) / RESULT_FILE).read_text()))


_NUMBERS = ("objective", "bound", "gap", "status", "wall_s", "checks")


@dataclass(frozen=True)
class AssignmentSummary(StageSummary):
    objective: float
    bound: float | None
    gap: float | None
    status: str
    wall_s: float


def solve(ctx: StageContext) -> AssignmentSummary:
    """Solve on the statistics, once (rank 0 under torchrun; the result is broadcast, and an
    error stops every rank); DIR/assignment/result.json gets the assignment and its report."""
    solved = ctx.dist.on_main(lambda: _solve_and_save(ctx))
    ctx.dist.barrier()
    return AssignmentSummary(
        objective=solved.objective,
        bound=solved.bound,
        gap=solved.gap,
        status=solved.status,
        wall_s=solved.wall_s,
    )


def live_features(std: np.ndarray) -> np.ndarray:
    """Indices of the features whose training-set standard deviation is above the head's floor
    (qpm_zoo.head.STD_FLOOR). A feature that never varies (a dead channel) explains nothing, a
    checkpoint whose head divides by σ = 0 is refused on load, and one below the floor would be
    divided by the floor instead of its σ; so the assignment never selects one."""
    from qpm_zoo.head import STD_FLOOR

    return np.flatnonzero(np.asarray(std) > STD_FLOOR)


def solve_on_live_features(
    A: np.ndarray, R: np.ndarray, b: np.ndarray, std: np.ndarray, n: int, k: int, **solver_options
):
    """`solve_assignment` on the live features only (`live_features`); returns its result, whose
    indices count live features, and the live features' dense indices to map them back."""
    from ..solver import solve_assignment

    live = live_features(std)
    if len(live) < n:
        raise FitConfigError(
            f"assignment.n = {n}, but only {len(live)} of the dense model's "
            f"{len(std)} features vary on the training set (the others are dead); "
            "lower assignment.n or train the dense model longer"
        )
    result = solve_assignment(A[live], R[np.ix_(live, live)], b[live], n, k, **solver_options)
    return result, live


def redundancy_matrix(ctx: StageContext, stats) -> np.ndarray:
    """The R that `assignment.redundancy` asks for, from the run's statistics."""
    kind = ctx.config.assignment.redundancy
    try:
        return stats.redundancy(kind)
    except ValueError:
        raise FitConfigError(
            f"assignment.redundancy = {kind}: the statistics in {ctx.work_dir('statistics')} "
            "were computed before qpm-zoo kept that matrix; delete that folder to recompute them"
        ) from None


def _solve_and_save(ctx: StageContext) -> SolvedAssignment:
    stats = load_statistics(ctx)
    a = ctx.config.assignment
    result, live = solve_on_live_features(
        stats.A,
        redundancy_matrix(ctx, stats),
        stats.b,
        stats.std,
        a.n,
        a.k,
        time_limit=a.time_limit,
        mip_gap=a.mip_gap,
        seed=ctx.config.seed,
        redundancy_weight=a.redundancy_weight,
    )
    if not all(result.checks.values()):
        raise RuntimeError(f"the assignment violates constraints: {result.checks}")
    report = result.to_dict()
    report["selected"] = [int(f) for f in live[np.asarray(report["selected"])]]  # dense indices
    report["dead_features"] = int(len(stats.std) - len(live))
    solved = SolvedAssignment.from_report(report)
    solved.save(ctx.work_dir(NAME))
    return solved


def proof_metrics(solved: SolvedAssignment) -> dict[str, float]:
    """What the solver proved, as checkpoint metrics (docs/method.md §7.6): the objective of the
    assignment, the proven upper bound on any assignment's objective, and the relative gap."""
    values = {
        "assignment_objective": solved.objective,
        "assignment_bound": solved.bound,
        "assignment_gap": solved.gap,
    }
    return {key: float(value) for key, value in values.items() if value is not None}


def load_assignment(ctx: StageContext) -> SolvedAssignment:
    return SolvedAssignment.load(ctx.work_dir(NAME))
