"""`solve_assignment`: the QPM assignment of docs/method.md §3, every constraint verified on the result.

The solve has three parts, all under one time limit:

1. τ and the penalised pairs (`threshold.redundancy_threshold`), which define the objective;
2. the incumbent: greedy construction plus a tabu swap search over the selection, each
   selection valued with its best distinct class sets (`heuristic`, `oracle`);
3. the proof: two bounds in closed form, certified without a solver (the LP bound without
   redundancy, `relaxation`, and the group Lagrangian that sees redundancy, `lagrangian`);
   on problems too large for SCIP's model to list every class's features, the semidefinite
   bound (`semidefinite`: SCS proposes, a convex reformulation certifies); then the exact SCIP
   model over the selection (`exact.ExactModel`), warm-started with that incumbent. SCIP may
   still improve the incumbent; the smallest of the bounds is the reported upper bound.

The returned objective is always recomputed from the returned arrays with
`AssignmentProblem.terms`, never taken from a solver.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from qpm_zoo.errors import QPMError
from training.solver.exact import ExactModel, ModelSize
from training.solver.heuristic import greedy_selection, tabu_search
from training.solver.lagrangian import selection_bound
from training.solver.oracle import Assignment, SelectionOracle
from training.solver.problem import AssignmentProblem, ObjectiveTerms
from training.solver.relaxation import lp_prices, refine_prices
from training.solver.semidefinite import semidefinite_bound
from training.solver.threshold import ThresholdResult

logger = logging.getLogger(__name__)

#: statuses of a result: the gap target was proven, the time ran out, or the user stopped it
STATUSES = ("optimal", "time_limit", "interrupted")

#: where a proven bound comes from: the LP without redundancy, the group Lagrangian, the
#: semidefinite bound, SCIP
BOUND_SOURCES = ("relaxation", "lagrangian", "semidefinite", "scip")


class NoFeasibleAssignment(QPMError, RuntimeError):
    """The time limit ended before any assignment satisfying docs/method.md §3 was found."""


@dataclass(frozen=True)
class AssignmentResult:
    """A feasible assignment, its objective, what is proven about it, and its checks."""

    selected: np.ndarray  #: [n] sorted feature indices (s_f = 1)
    weight: np.ndarray  #: [C, n] binary W over the selected features, k ones per row
    objective: float  #: Z_A + Z_B − Z_R of (selected, weight), recomputed
    objective_terms: ObjectiveTerms
    bound: float | None  #: proven upper bound on the objective (None: none proven)
    gap: float | None  #: (bound − objective) / |objective|; 0 when proven optimal
    status: str  #: one of STATUSES
    wall_s: float
    time_to_best_s: float
    incumbent_source: str  #: "heuristic" or "exact" (the SCIP model found it)
    threshold: ThresholdResult
    checks: dict[str, bool]
    details: dict = field(default_factory=dict)  #: solver statistics (nodes, cuts, timings)
    redundancy_weight: float = 1.0  #: w_R, the weight Z_R had (1: the paper's formulation)

    @property
    def tau(self) -> float:
        return self.threshold.tau

    def to_dict(self) -> dict:
        """JSON-ready: the assignment, its numbers and its checks."""
        return {
            "selected": [int(f) for f in self.selected],
            "weight": np.asarray(self.weight, dtype=int).tolist(),
            "objective": self.objective,
            "objective_terms": {
                "z_a": self.objective_terms.z_a,
                "z_b": self.objective_terms.z_b,
                "z_r": self.objective_terms.z_r,
            },
            "bound": self.bound,
            "gap": self.gap,
            "status": self.status,
            "wall_s": round(self.wall_s, 3),
            "time_to_best_s": round(self.time_to_best_s, 3),
            "incumbent_source": self.incumbent_source,
            "threshold": self.threshold.to_dict(),
            "redundancy_weight": self.redundancy_weight,
            "checks": dict(self.checks),
            "details": self.details,
        }


def relative_gap(objective: float, bound: float | None) -> float | None:
    """(bound − objective) / |objective| (SCIP's convention for a maximisation), ≥ 0."""
    if bound is None:
        return None
    return max(0.0, bound - objective) / max(abs(objective), 1e-9)


def solve_assignment(
    A,
    R,
    b,
    n: int,
    k: int,
    *,
    time_limit: float,
    mip_gap: float = 1e-4,
    seed: int = 0,
    warm_start=None,
    model_size: ModelSize | None = None,
    heuristic_share: float = 0.15,
    bound_share: float = 0.25,
    semidefinite_share: float = 0.9,
    redundancy_weight: float = 1.0,
) -> AssignmentResult:
    """Select `n` of the F features of A [F, C] and give every class `k` distinct ones.

    `R` is the [F, F] redundancy (strict upper triangle or symmetric) and `b` [F] the locality
    prior, as `training.statistics` computes them. The search stops after about `time_limit`
    seconds or once the relative gap is at most `mip_gap`; at the limit the best assignment
    found is returned with its gap. `warm_start` (feature indices) seeds the local search;
    `heuristic_share`, `bound_share` and `semidefinite_share` are the parts of the remaining time
    the local search, the group Lagrangian and the semidefinite bound (only on problems with
    more than `_LISTED_PAIRS` feature-class pairs; 0 turns it off) may take before SCIP gets the
    rest. `redundancy_weight` multiplies the redundancy term Z_R (1: the paper's formulation;
    docs/method.md §3).

    Raises ValueError for inconsistent inputs (before any solving) and NoFeasibleAssignment only
    if nothing feasible was found in time.
    """
    begin = time.monotonic()
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if not (isinstance(mip_gap, (int, float)) and math.isfinite(mip_gap) and mip_gap >= 0):
        raise ValueError(f"mip_gap must be a non-negative number, got {mip_gap!r}")
    problem = AssignmentProblem.build(
        A,
        R,
        b,
        n,
        k,
        tau_time_limit=max(1.0, min(60.0, 0.1 * time_limit)),
        seed=seed,
        redundancy_weight=redundancy_weight,
    )
    start = _warm_start(warm_start, problem)
    oracle = SelectionOracle(problem)
    details: dict = {"tau_s": round(problem.threshold.wall_s, 3)}
    interrupted = False

    # 2. incumbent
    search_started = time.monotonic()
    try:
        greedy = greedy_selection(problem, start)
        search = tabu_search(
            problem,
            greedy,
            seed=seed,
            time_limit=max(0.5, heuristic_share * _remaining(begin, time_limit)),
        )
        incumbent = oracle(search.selected)
        time_to_best = search_started - begin + search.time_to_best_s
        details["heuristic_iterations"] = search.iterations
    except KeyboardInterrupt:
        interrupted = True
        incumbent, time_to_best = oracle(greedy_selection(problem, start)), time.monotonic() - begin
    details["heuristic_s"] = round(time.monotonic() - search_started, 3)
    source = "heuristic"
    logger.info(
        "assignment: heuristic objective %.4f after %.1f s",
        incumbent.value,
        time.monotonic() - begin,
    )

    # 3. proof (and perhaps a better incumbent). First the closed-form bounds, certified
    # independently of SCIP and all there is when SCIP's root LP does not finish: the LP bound
    # without Z_R, then the group Lagrangian, which sees Z_R and never ends above it.
    bounds: dict[str, float] = {}  # by BOUND_SOURCES

    def keep_bound(source: str, label: str, value: float, extra: dict) -> None:
        bounds[source] = value
        details.update(extra)
        logger.info(
            "assignment: %.0f s %s bound %.4f (gap %.2f %%)",
            time.monotonic() - begin,
            label,
            value,
            100 * relative_gap(incumbent.value, min(bounds.values())),
        )

    status = "interrupted" if interrupted else "time_limit"
    if not interrupted:
        prices, bounds["relaxation"] = refine_prices(problem, lp_prices(problem))
        budget = bound_share * _remaining(begin, time_limit)
        if budget > 0:
            lagrangian = selection_bound(
                problem, incumbent=incumbent.value, time_limit=budget, prices=prices
            )
            prices = lagrangian.prices
            keep_bound("lagrangian", "group Lagrangian", lagrangian.bound, lagrangian.to_details())
        budget = semidefinite_share * _remaining(begin, time_limit)
        large = problem.num_features * problem.num_classes > _LISTED_PAIRS
        if large and budget > 0 and relative_gap(incumbent.value, min(bounds.values())) > mip_gap:
            conic = semidefinite_bound(
                problem, incumbent=incumbent.value, prices=prices, time_limit=budget
            )
            if conic is not None:
                keep_bound("semidefinite", "semidefinite", conic.bound, conic.to_details())
    # when the closed-form bounds already prove the incumbent within mip_gap, SCIP is not needed
    proven = bool(bounds) and relative_gap(incumbent.value, min(bounds.values())) <= mip_gap
    if not interrupted and not proven and _remaining(begin, time_limit) > 0:
        size = model_size or default_model_size(problem.num_features, problem.num_classes)
        exact = ExactModel(problem, size, oracle=oracle)
        exact.add_start(incumbent)
        exact_started = time.monotonic()

        def report(primal: float, dual: float) -> None:
            proven = _is_bound(dual)
            logger.info(
                "assignment: %.0f s incumbent %.4f bound %s (gap %s)",
                time.monotonic() - begin,
                primal,
                f"{dual:.4f}" if proven else "none yet (root LP)",
                f"{100 * relative_gap(primal, dual):.2f} %" if proven else "-",
            )

        outcome = exact.solve(
            time_limit=_remaining(begin, time_limit), mip_gap=mip_gap, seed=seed, progress=report
        )
        details.update(
            exact_s=round(time.monotonic() - exact_started, 3),
            nodes=outcome.nodes,
            cuts=outcome.num_cuts,
            scip_status=outcome.status,
        )
        if outcome.best is not None and outcome.best.value > incumbent.value + 1e-9:
            incumbent, source = outcome.best, "exact"
            time_to_best = exact_started - begin + (outcome.time_to_best_s or 0.0)
        if outcome.status == "userinterrupt":
            status = "interrupted"
        if _is_bound(outcome.dual_bound) and outcome.status != "infeasible":
            bounds["scip"] = outcome.dual_bound
            if outcome.status in ("optimal", "gaplimit"):
                status = "optimal"
    # every bound is proven, so none is below the incumbent beyond rounding (the tests compare
    # them with brute-force optima); relative_gap reads such rounding as a gap of 0
    bound = min(bounds.values()) if bounds else None
    details.update({f"{name}_bound": value for name, value in bounds.items()})
    if bounds:
        details["bound_source"] = min(bounds, key=bounds.get)
    gap = relative_gap(incumbent.value, bound)
    if status == "time_limit" and gap is not None and gap <= mip_gap:
        status = "optimal"
    return _result(problem, incumbent, bound, gap, status, begin, time_to_best, source, details)


#: class-feature pairs the exact model lists explicitly (x variables) before it truncates
_LISTED_PAIRS = 25_000


def default_model_size(num_features: int, num_classes: int) -> ModelSize:
    """List every feature for every class when that stays small (the LP is then exact in Z_A);
    otherwise each class's top features, at least 100, with the rest valued by rank buckets.

    On Fashion-MNIST's 1280 x 10 all-features model the gap after 150 s is 1.9 % against 6.3 %
    with the top 100; at 200 classes the full listing makes the root LP too slow to finish.
    """
    return ModelSize(top_m=min(num_features, max(100, _LISTED_PAIRS // num_classes)))


def _is_bound(dual: float) -> bool:
    """False for SCIP's "infinity" (1e20), its dual bound before the root LP is solved."""
    return abs(dual) < 1e19


def _remaining(begin: float, time_limit: float) -> float:
    return time_limit - (time.monotonic() - begin)


def _warm_start(warm_start, problem: AssignmentProblem) -> np.ndarray | None:
    if warm_start is None:
        return None
    start = np.asarray(warm_start)
    F = problem.num_features
    if start.ndim != 1 or not np.issubdtype(start.dtype, np.integer):
        raise ValueError(
            f"warm_start must be a 1-D array of feature indices, got shape {start.shape} "
            f"and dtype {start.dtype}"
        )
    if start.size and (start.min() < 0 or start.max() >= F):
        raise ValueError(f"warm_start has feature indices outside 0..{F - 1}")
    if len(np.unique(start)) != len(start) or len(start) > problem.n:
        raise ValueError(
            f"warm_start must hold at most n={problem.n} distinct feature indices, got {len(start)}"
        )
    return start


def _result(
    problem: AssignmentProblem,
    incumbent: Assignment,
    bound,
    gap,
    status,
    begin,
    time_to_best,
    source,
    details,
) -> AssignmentResult:
    selected = np.asarray(incumbent.selected, dtype=np.int64)
    order = np.argsort(selected)
    selected, weight = selected[order], np.asarray(incumbent.weight, dtype=np.int8)[:, order]
    terms = problem.terms(selected, weight)
    checks = problem.checks(selected, weight)
    if not all(checks.values()):
        failed = [name for name, ok in checks.items() if not ok]
        raise NoFeasibleAssignment(
            f"no feasible assignment was found: the best one violates {failed}"
        )
    return AssignmentResult(
        selected=selected,
        weight=weight,
        objective=terms.total,
        objective_terms=terms,
        bound=bound,
        gap=gap,
        status=status,
        wall_s=time.monotonic() - begin,
        time_to_best_s=float(time_to_best),
        incumbent_source=source,
        threshold=problem.threshold,
        checks=checks,
        details=details,
        redundancy_weight=problem.redundancy_weight,
    )
