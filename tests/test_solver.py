"""training.solver: optimality against brute force, τ on known graphs, bad inputs, the time limit.

The brute force here is written from docs/method.md §3 independently of the solver's modules: τ by
checking every n-subset, R̃ from its formula, and for each selection the best distinct class
sets as a full assignment problem over all k-subsets.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from training.solver import solve_assignment
from training.solver.instances import InstanceSpec, generate_statistics
from training.solver.threshold import redundancy_threshold


def brute_tau(R: np.ndarray, n: int) -> float:
    """Smallest candidate t such that some n-subset has every pair R < t."""
    F = len(R)
    values = np.unique(R[np.triu_indices(F, 1)])
    candidates = [*values, np.nextafter(values[-1], np.inf)]
    for t in candidates:
        for subset in itertools.combinations(range(F), n):
            if all(R[f, g] < t for f, g in itertools.combinations(subset, 2)):
                return float(t)
    raise AssertionError("unreachable: the last candidate joins every pair")


def brute_class_sets(values: np.ndarray, k: int) -> float:
    """The best Σ values over distinct k-subsets of the n rows, one per class (column): a full
    assignment problem over every k-subset."""
    n, C = values.shape
    subsets = list(itertools.combinations(range(n), k))
    gain = np.array([[values[list(s), c].sum() for s in subsets] for c in range(C)])
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return float(gain[rows, cols].sum())


def brute_optimum(
    A: np.ndarray, R: np.ndarray, b: np.ndarray, n: int, k: int, redundancy_weight: float = 1.0
) -> float:
    F, C = A.shape
    tau = brute_tau(R, n)
    nonzero = R[np.triu_indices(F, 1)]
    nonzero = nonzero[nonzero > 0]
    low, high = nonzero.min(), nonzero.max()
    penalty = np.where((R >= tau) & (R > 0), (R - low) / (high - low), 0.0)
    best = -np.inf
    for sel in itertools.combinations(range(F), n):
        z_a = 1000.0 / (k * C) * brute_class_sets(A[list(sel)], k)
        z_r = sum(penalty[f, g] for f, g in itertools.combinations(sel, 2))
        best = max(best, z_a + b[list(sel)].sum() - redundancy_weight * z_r)
    return best


def random_instance(seed: int, F: int, C: int, similar_classes: bool = False):
    rng = np.random.default_rng(seed)
    A = rng.normal(0.0, 0.3, size=(F, C))
    if similar_classes:  # classes that all prefer the same features: uniqueness must bite
        A = A * 0.1 + rng.normal(0.0, 0.3, size=(F, 1))
    R = np.triu(rng.uniform(0.0, 1.0, size=(F, F)), 1)
    b = rng.uniform(0.0, 0.3, size=F)
    return A, R, b


@pytest.mark.parametrize(("seed", "similar"), [(0, False), (1, False), (2, True), (3, True)])
def test_objective_equals_brute_force_optimum(seed, similar):
    A, R, b = random_instance(seed, F=10, C=6, similar_classes=similar)
    result = solve_assignment(A, R, b, 5, 2, time_limit=60, mip_gap=0.0, seed=seed)
    expected = brute_optimum(A, R, b, 5, 2)
    assert result.status == "optimal"
    assert result.objective == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert result.bound >= expected - 1e-6
    assert result.gap == pytest.approx(0.0, abs=1e-6)
    assert all(result.checks.values())
    assert result.tau == pytest.approx(brute_tau(R, 5))


@pytest.mark.parametrize(("seed", "weight"), [(0, 0.0), (2, 40.0), (3, 400.0)])
def test_redundancy_weight_scales_z_r_and_stays_optimal(seed, weight):
    """w_R multiplies every penalty (docs/method.md §3); τ and P do not depend on it."""
    A, R, b = random_instance(seed, F=10, C=6, similar_classes=seed % 2 == 1)
    result = solve_assignment(A, R, b, 5, 2, time_limit=60, seed=seed, redundancy_weight=weight)
    assert result.status == "optimal"
    assert result.objective == pytest.approx(brute_optimum(A, R, b, 5, 2, weight), abs=1e-9)
    assert result.tau == pytest.approx(brute_tau(R, 5))
    assert result.to_dict()["redundancy_weight"] == weight
    if weight == 0:
        assert result.objective_terms.z_r == 0


@pytest.mark.parametrize("seed", range(4, 10))
def test_bound_is_never_below_the_optimum(seed):
    """Stopped early (tiny gap tolerance not reached or not), the bound must still be valid."""
    A, R, b = random_instance(seed, F=11, C=8, similar_classes=seed % 2 == 0)
    expected = brute_optimum(A, R, b, 5, 2)
    result = solve_assignment(A, R, b, 5, 2, time_limit=30, mip_gap=0.05, seed=seed)
    assert result.objective <= expected + 1e-9
    assert result.bound >= expected - 1e-6
    assert result.gap == pytest.approx((result.bound - result.objective) / abs(result.objective))


def test_result_arrays_agree_with_the_reported_objective():
    A, R, b = random_instance(11, F=10, C=6, similar_classes=True)
    result = solve_assignment(A, R, b, 5, 2, time_limit=30)
    data = result.to_dict()
    assert data["selected"] == sorted(data["selected"]) and len(data["selected"]) == 5
    weight = np.array(data["weight"])
    assert weight.shape == (6, 5) and set(np.unique(weight)) <= {0, 1}
    assert (weight.sum(axis=1) == 2).all()
    assert len({tuple(row) for row in weight.tolist()}) == 6  # distinct class sets
    z_a = (
        1000.0
        / (2 * 6)
        * sum(A[f, c] for c in range(6) for j, f in enumerate(data["selected"]) if weight[c, j])
    )
    assert data["objective_terms"]["z_a"] == pytest.approx(z_a)
    terms = data["objective_terms"]
    assert data["objective"] == pytest.approx(terms["z_a"] + terms["z_b"] - terms["z_r"])
    assert set(data["checks"]) == {"sum_s_equals_n", "w_le_s", "k_per_class", "class_sets_distinct"}


# --- τ on graphs whose answer is known -------------------------------------------------------


def redundancy_from_groups(
    F: int, groups: list[list[int]], inside: float = 0.9, outside: float = 0.1
):
    """Features in one group are redundant with each other (R = inside), others are not."""
    R = np.full((F, F), outside)
    for group in groups:
        for f, g in itertools.combinations(group, 2):
            R[f, g] = R[g, f] = inside
    return np.triu(R, 1)


def test_tau_is_the_smallest_threshold_leaving_an_unpenalised_selection():
    # 6 features in 3 redundant pairs: 3 can avoid every redundant pair, 4 cannot
    R = redundancy_from_groups(6, [[0, 1], [2, 3], [4, 5]])
    three = redundancy_threshold(R, 3)
    assert three.tau == 0.9 == brute_tau(R, 3) and three.proven_minimal
    assert three.num_penalised_pairs == 3  # exactly the redundant pairs
    assert not any(R[f, g] >= three.tau for f, g in itertools.combinations(sorted(three.clique), 2))
    four = redundancy_threshold(R, 4)
    assert four.tau == brute_tau(R, 4) > 0.9  # every redundant pair stays unpenalised
    assert four.num_penalised_pairs == 0


def test_tau_on_graded_redundancy_matches_brute_force():
    rng = np.random.default_rng(5)
    for F, n in [(8, 3), (9, 4), (10, 5)]:
        R = np.triu(rng.uniform(size=(F, F)), 1)
        result = redundancy_threshold(R, n)
        assert result.tau == brute_tau(R, n)
        assert result.proven_minimal
        assert len(result.clique) == n


def test_tau_with_a_planted_clique():
    F, n = 30, 6
    rng = np.random.default_rng(0)
    R = np.triu(rng.uniform(0.5, 1.0, size=(F, F)), 1)
    planted = [3, 7, 11, 18, 22, 29]
    for f, g in itertools.combinations(planted, 2):
        R[f, g] = 0.01 * (f + g) / 60
    result = redundancy_threshold(R, n)
    largest_inside = max(R[f, g] for f, g in itertools.combinations(planted, 2))
    smallest_outside = min(
        R[f, g]
        for f, g in itertools.combinations(range(F), 2)
        if not (f in planted and g in planted)
    )
    # every threshold in (largest_inside, smallest_outside] penalises the same pairs: all but the clique's
    assert largest_inside < result.tau <= smallest_outside
    assert result.num_penalised_pairs == math.comb(F, 2) - math.comb(n, 2)
    assert sorted(result.clique) == planted and result.proven_minimal


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda A, R, b: (A[:, :, None], R, b), "A must be 2-dimensional"),
        (lambda A, R, b: (A, R[:-1], b), r"R must have shape \(10, 10\)"),
        (lambda A, R, b: (A, R, b[:-1]), r"b must have shape \(10,\)"),
        (lambda A, R, b: (np.where(A > 0.5, np.nan, A), R, b), "A contains .* NaN or infinite"),
        (lambda A, R, b: (A, R, np.full_like(b, np.inf)), "b contains 10 NaN or infinite"),
    ],
)
def test_bad_arrays_raise_value_error_naming_the_input(change, message):
    A, R, b = random_instance(0, F=10, C=6)
    with pytest.raises(ValueError, match=message):
        solve_assignment(*change(A, R, b), 5, 2, time_limit=10)


@pytest.mark.parametrize(
    ("n", "k", "message"),
    [
        (11, 2, r"n \(features to select\) must be in 1..10"),
        (5, 6, r"k \(features per class\) must be in 1..n=5"),
        (4, 3, r"binom\(n=4, k=3\) = 4 < 6 classes"),
        (5.0, 2, "n must be an integer"),
    ],
)
def test_impossible_sizes_raise_value_error(n, k, message):
    A, R, b = random_instance(0, F=10, C=6)
    with pytest.raises(ValueError, match=message):
        solve_assignment(A, R, b, n, k, time_limit=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_limit": 0}, "time_limit must be a positive"),
        ({"time_limit": 10, "mip_gap": -0.1}, "mip_gap must be a non-negative"),
        ({"time_limit": 10, "warm_start": [0, 99]}, r"warm_start has feature indices outside 0..9"),
        ({"time_limit": 10, "warm_start": [1, 1]}, "distinct"),
        ({"time_limit": 10, "redundancy_weight": -1.0}, "redundancy_weight must be a finite"),
        ({"time_limit": 10, "redundancy_weight": math.inf}, "redundancy_weight must be a finite"),
    ],
)
def test_bad_options_raise_value_error(kwargs, message):
    A, R, b = random_instance(0, F=10, C=6)
    with pytest.raises(ValueError, match=message):
        solve_assignment(A, R, b, 5, 2, **kwargs)


def test_warm_start_is_used_and_result_is_still_optimal():
    A, R, b = random_instance(1, F=10, C=6)
    result = solve_assignment(A, R, b, 5, 2, time_limit=30, mip_gap=0.0, warm_start=[9, 8, 7])
    assert result.objective == pytest.approx(brute_optimum(A, R, b, 5, 2))


# --- the time limit --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_like_instance():
    stats = generate_statistics(
        InstanceSpec(num_features=384, num_classes=120, samples_per_class=12)
    )
    return stats.A, stats.R, stats.b


def test_time_limit_returns_the_best_assignment_with_its_gap(paper_like_instance):
    A, R, b = paper_like_instance
    result = solve_assignment(A, R, b, 40, 5, time_limit=6, mip_gap=0.0)
    assert result.status == "time_limit"
    assert all(result.checks.values())
    assert result.bound is not None and result.bound > result.objective
    assert 0 < result.gap == pytest.approx((result.bound - result.objective) / result.objective)
    assert result.wall_s < 6 + 10  # the limit plus building the model and τ
    assert result.incumbent_source in ("heuristic", "exact")


# --- the benchmark command -------------------------------------------------------------------


def test_solver_bench_json_prints_one_checked_run_per_solver(capsys):
    from training.cli import main

    code = main(["solver-bench", "--shape", "64x10", "--n", "16", "--k", "5", "--time-limit", "20",
                 "--baseline", "--json"])  # fmt: skip
    assert code == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["solver"] for r in runs] == ["qpm-zoo", "plain SCIP"]
    for r in runs:
        assert {"objective", "bound", "gap", "wall_s", "checks"} <= set(r)
        assert r["checks"] and all(r["checks"].values())
        assert r["shape"] == "64x10" and r["status"] == "optimal"
    ours = runs[0]  # the reported bound is the smallest proven one, and says where it is from
    assert ours["bound"] == min(ours["bounds"].values()) == ours["bounds"][ours["bound_source"]]
    # the solver's statistics come along, so a bench run can be read without re-running it
    assert ours["details"]["bound_source"] == ours["bound_source"]
    assert ours["details"]["heuristic_s"] >= 0
    # both solved the same instance to optimality: the same objective
    assert runs[0]["objective"] == pytest.approx(runs[1]["objective"], rel=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--shape", "64by10", "--n", "16", "--k", "5", "--time-limit", "5"],
            "--shape must look like",
        ),
        (
            ["--shape", "64x10", "--n", "3", "--k", "5", "--time-limit", "5"],
            "k (features per class)",
        ),
        (
            ["--shape", "64x10", "--n", "16", "--k", "5", "--time-limit", "0"],
            "--time-limit must be",
        ),
    ],
)
def test_solver_bench_bad_arguments_are_one_line_errors(argv, message, capsys):
    from training.cli import main

    assert main(["solver-bench", *argv, "--json"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
