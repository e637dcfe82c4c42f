"""The semidefinite bound (docs/method.md §7.4b) is proven: never below a brute-force optimum.

The instances and their brute-force optima are those of test_solver_bounds.py. The bound must
hold whatever SCS returns, because only the convex reformulation (checked semidefinite) enters
it: so it is also tested with random reformulations in place of SCS's duals, with a core smaller
than the feature set (selected features outside the core pay no redundancy), and its concave
certificate against points of the set it bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_solver_bounds import SEEDS, TOL, brute_force, random_problem

from training.solver import solve_assignment
from training.solver.instances import InstanceSpec, generate_statistics
from training.solver.problem import AssignmentProblem
from training.solver.relaxation import lp_prices, no_redundancy_bound, refine_prices
from training.solver.semidefinite import (
    CoreBound,
    concave_bound,
    project_capped_simplex,
    reformulation,
    semidefinite_bound,
)

CASES = SEEDS[::2]


@pytest.fixture(scope="module")
def solved():
    return {seed: (problem := random_problem(seed), brute_force(problem)) for seed in CASES}


def _prices(problem: AssignmentProblem) -> np.ndarray:
    return refine_prices(problem, lp_prices(problem), iterations=300)[0]


@pytest.mark.parametrize("core_size", [None, 5])
def test_bound_is_never_below_the_optimum(solved, core_size):
    """With every feature in the core, and with a core of 5 of the 8-9 features (n = 4)."""
    tight = 0
    for seed, (problem, bf) in solved.items():
        result = semidefinite_bound(
            problem,
            incumbent=bf.optimum,
            prices=_prices(problem),
            time_limit=5.0,
            core_size=core_size or problem.num_features,
            max_price_steps=40,
        )
        if result is None:  # no penalised pair: nothing to bound
            assert not np.any(problem.penalty), seed
            continue
        assert result.bound >= bf.optimum - TOL, seed
        assert result.core_size == (core_size or problem.num_features)
        tight += result.bound <= bf.optimum_without_uniqueness + 1e-6
    assert tight >= len(solved) // 4, f"the bound reaches the optimum without uniqueness {tight}x"


def test_random_reformulations_are_repaired_into_bounds(solved):
    """Any u and N ≥ 0 (here random, far from SCS's): the repair makes M semidefinite on
    Σ d = 0, and the bound then holds for any prices."""
    rng = np.random.default_rng(3)
    for seed, (problem, bf) in solved.items():
        F, n = problem.num_features, problem.n
        core = np.sort(rng.choice(F, size=int(rng.integers(n, F + 1)), replace=False))
        K = len(core)
        form = reformulation(
            problem.penalty,
            core,
            rng.normal(0.0, 1.0, K),
            rng.uniform(0.0, 0.5, (K, K)) * (rng.random((K, K)) < 0.5),
        )
        basis = np.linalg.svd(np.ones((1, K)))[2][1:].T  # orthonormal, Σ d = 0
        assert np.linalg.eigvalsh(basis.T @ form.matrix @ basis).min() >= -1e-9, seed
        prices = rng.normal(0.0, 30.0, problem.num_classes)
        value, _, _ = CoreBound(problem, form).evaluate(prices)
        assert value >= bf.optimum - TOL, seed


def test_concave_certificate_bounds_every_point_of_its_set():
    rng = np.random.default_rng(4)
    problem = random_problem(1)
    K = problem.num_features
    form = reformulation(problem.penalty, np.arange(K), rng.normal(-1.0, 0.3, K), np.zeros((K, K)))
    for total in (1, 2, 4, K - 1):
        linear = rng.normal(0.0, 1.0, K)
        upper, point = concave_bound(linear, form, total, np.full(K, 0.5))
        assert abs(point.sum() - total) < 1e-6 and point.min() >= 0 and point.max() <= 1

        def q(s, linear=linear):
            return linear @ s - 0.5 * s @ form.matrix @ s

        samples = [project_capped_simplex(rng.normal(0.5, 1.0, K), total) for _ in range(500)]
        assert max(q(s) for s in samples) <= upper + 1e-9
        assert q(point) >= upper - 1e-3 * max(1.0, abs(upper))  # and tight at its point


@pytest.mark.slow
def test_solver_uses_it_on_a_large_instance_and_it_holds():
    """A 400 x 80 simulated instance (more pairs than SCIP's model lists): the solver reports
    the semidefinite bound, which lies between the incumbent and the no-redundancy bound."""
    stats = generate_statistics(InstanceSpec(num_features=400, num_classes=80, seed=1))
    result = solve_assignment(stats.A, stats.R, stats.b, 30, 5, time_limit=60, mip_gap=0.0)
    assert all(result.checks.values())
    conic = result.details["semidefinite_bound"]
    problem = AssignmentProblem.build(stats.A, stats.R, stats.b, 30, 5, tau=result.tau)
    assert result.objective - TOL <= conic <= no_redundancy_bound(problem) + TOL
    assert result.bound == min(
        result.details[f"{name}_bound"]
        for name in ("relaxation", "lagrangian", "semidefinite", "scip")
        if f"{name}_bound" in result.details
    )
