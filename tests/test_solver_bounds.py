"""Every bound the solver reports is proven: none is ever below a feasible value.

Hundreds of small random instances are solved by brute force (every n-subset, its best
distinct class sets as a full assignment problem over all k-subsets, written here from
docs/method.md §3 on the problem's A, b and R̃), and every bound is compared with that optimum:
the no-redundancy bound, the group Lagrangian at random and at optimised multipliers, its
per-feature bounds (against the best selection holding that feature), and `solve_assignment`'s
reported bound. Half of the instances have classes that all prefer the same features, so the
uniqueness of class sets binds; one test checks that it does. A bound below a known feasible
value fails the test (no clamp in the solver hides it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from training.solver import solve_assignment
from training.solver.heuristic import greedy_selection, tabu_search
from training.solver.instances import InstanceSpec, generate_statistics
from training.solver.lagrangian import (
    GroupLagrangian,
    Multipliers,
    conjugate_binomial,
    group_cover,
    redundancy_groups,
    selection_bound,
)
from training.solver.oracle import SelectionOracle
from training.solver.problem import AssignmentProblem
from training.solver.relaxation import lagrangian_bound, no_redundancy_bound

#: rounding allowance when comparing a bound with an optimum (values are O(100))
TOL = 1e-7


@dataclass(frozen=True)
class BruteForce:
    optimum: float  #: with distinct class sets
    optimum_without_uniqueness: float
    best_with: np.ndarray  #: [F] best value of a selection holding feature f


def brute_force(problem: AssignmentProblem) -> BruteForce:
    A, b, P, n, k = problem.A, problem.b, problem.penalty, problem.n, problem.k
    F, C = A.shape
    alpha = 1000.0 / (k * C)
    best, best_free = -np.inf, -np.inf
    best_with = np.full(F, -np.inf)
    for sel in itertools.combinations(range(F), n):
        subsets = list(itertools.combinations(sel, k))
        gain = np.array([[A[list(s), c].sum() for s in subsets] for c in range(C)])
        rows, cols = linear_sum_assignment(gain, maximize=True)
        rest = b[list(sel)].sum() - sum(P[f, g] for f, g in itertools.combinations(sel, 2))
        value = alpha * gain[rows, cols].sum() + rest
        best = max(best, value)
        best_free = max(best_free, alpha * gain.max(axis=1).sum() + rest)
        best_with[list(sel)] = np.maximum(best_with[list(sel)], value)
    return BruteForce(best, best_free, best_with)


def random_problem(seed: int) -> AssignmentProblem:
    """F = 8 or 9 features, C = 3..6 classes, n = 4, k = 2; half with uniqueness binding."""
    rng = np.random.default_rng(seed)
    F, C = int(rng.integers(8, 10)), int(rng.integers(3, 7))
    A = rng.normal(0.0, 0.3, size=(F, C))
    if seed % 2:  # classes that all prefer the same features
        A = A * 0.1 + rng.normal(0.0, 0.3, size=(F, 1))
    R = np.triu(rng.uniform(0.0, 1.0, size=(F, F)) ** rng.uniform(0.5, 3.0), 1)
    b = rng.uniform(0.0, 0.3, size=F)
    return AssignmentProblem.build(A, R, b, 4, 2)


SEEDS = range(240)


@pytest.fixture(scope="module")
def solved() -> dict[int, tuple[AssignmentProblem, BruteForce]]:
    return {seed: (problem := random_problem(seed), brute_force(problem)) for seed in SEEDS}


def test_uniqueness_binds_on_many_instances(solved):
    binding = [s for s, (_, bf) in solved.items() if bf.optimum_without_uniqueness > bf.optimum]
    assert len(binding) >= len(SEEDS) // 5, f"uniqueness binds on only {len(binding)} instances"


def test_no_redundancy_bounds_are_valid(solved):
    rng = np.random.default_rng(0)
    for seed, (problem, bf) in solved.items():
        assert no_redundancy_bound(problem) >= bf.optimum - TOL, seed
        prices = rng.normal(0.0, 30.0, problem.num_classes)  # U(ν) is a bound for every ν
        assert lagrangian_bound(problem, prices) >= bf.optimum - TOL, seed


@pytest.mark.parametrize("cliques_and_pairs", [False, True])
def test_group_lagrangian_is_a_bound_for_any_multipliers(solved, cliques_and_pairs):
    rng = np.random.default_rng(1)
    for seed, (problem, bf) in solved.items():
        F = problem.num_features
        if cliques_and_pairs:
            groups = redundancy_groups(problem, F, candidates=np.arange(F), max_cliques=20)
        else:
            groups = redundancy_groups(problem, F)
        lagrangian = GroupLagrangian(problem, groups)
        for _ in range(5):
            m = Multipliers(
                rng.normal(0.0, 30.0, problem.num_classes),
                rng.uniform(0.0, 5.0, groups.num_groups) * (rng.random(groups.num_groups) < 0.7),
            )
            assert lagrangian.bound(m) >= bf.optimum - TOL, seed
            forced = lagrangian.forced_bounds(m)
            assert (forced >= bf.best_with - TOL).all(), seed


def test_groups_never_count_more_than_the_penalty(solved):
    for seed, (problem, _) in solved.items():
        F = problem.num_features
        groups = redundancy_groups(problem, layer_depth=F, candidates=np.arange(F), max_cliques=20)
        cover = group_cover(groups.members, groups.theta, F)
        assert (groups.theta >= 0).all() and (cover <= problem.penalty + 1e-12).all(), seed


def test_optimised_bound_is_valid_and_no_worse_than_its_start(solved):
    for seed in SEEDS[::2]:
        problem, bf = solved[seed]
        outcome = selection_bound(problem, incumbent=bf.optimum - 1.0, time_limit=5.0)
        assert outcome.bound >= bf.optimum - TOL, seed
        assert outcome.bound <= no_redundancy_bound(problem) + TOL, seed
        assert (outcome.forced >= bf.best_with - TOL).all(), seed


def test_conjugate_lines_lie_below_the_binomial():
    lam = np.random.default_rng(2).uniform(0.0, 60.0, 5000)
    for X in range(61):
        assert (lam * X - conjugate_binomial(lam) <= math.comb(X, 2) + 1e-9).all()
    # tight: the line with slope in [X − 1, X] touches binom(·, 2) at X
    for X in range(1, 61):
        slope = np.array([X - 1, X - 0.5, X], dtype=float)
        assert np.allclose(slope * X - conjugate_binomial(slope), math.comb(X, 2))


@pytest.mark.parametrize("seed", range(0, 240, 8))
def test_solver_bound_is_never_below_the_optimum(solved, seed):
    problem, bf = solved[seed]
    result = solve_assignment(
        problem.A, problem.R, problem.b, 4, 2, time_limit=10, mip_gap=0.05, seed=seed
    )
    assert result.objective <= bf.optimum + TOL
    assert result.bound >= bf.optimum - TOL
    assert result.bound >= result.objective - TOL
    assert all(result.checks.values())


def test_bounds_hold_against_the_best_objective_found_on_a_benchmark_instance():
    """A 256 x 40 simulated instance: the tabu incumbent (and SCIP's) below every bound."""
    stats = generate_statistics(
        InstanceSpec(num_features=256, num_classes=40, samples_per_class=10)
    )
    problem = AssignmentProblem.build(stats.A, stats.R, stats.b, 20, 5)
    search = tabu_search(problem, greedy_selection(problem), time_limit=3.0)
    best = SelectionOracle(problem)(search.selected).value
    outcome = selection_bound(problem, incumbent=best, time_limit=10.0)
    assert outcome.bound >= best - TOL
    assert outcome.bound <= no_redundancy_bound(problem) + TOL
    assert outcome.forced[search.selected].min() >= best - TOL
    result = solve_assignment(stats.A, stats.R, stats.b, 20, 5, time_limit=6, mip_gap=0.0)
    assert result.bound >= max(best, result.objective) - TOL
