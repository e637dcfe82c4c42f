"""A quick proven bound: the LP of the problem without redundancy, certified through its dual.

Z_R ≥ 0 is subtracted, so dropping it (and the uniqueness constraint) leaves a relaxation.
Its Lagrangian dual over the class constraints Σ_f W_fc = k is, for any prices ν ∈ R^C,

    U(ν) = Σ_c k ν_c + (sum of the n largest of  b_f + Σ_c max(0, a_fc − ν_c)),

(a = (1000/(kC))·A): a class pays ν_c per slot and a selected feature earns what the classes
would pay more than that. U(ν) ≥ the optimum for *every* ν, so the bound does not depend on
trusting an LP solver's tolerances: HiGHS only supplies good prices (the LP duals), and U is
evaluated exactly. At the LP's optimal duals U equals the LP bound.

Its prices start the group Lagrangian (`lagrangian`), which adds redundancy to U and is much
stronger; this bound is the floor under it and the net when everything else is cut short.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from training.solver.problem import AssignmentProblem


def feature_earnings(problem: AssignmentProblem, prices: np.ndarray) -> np.ndarray:
    """e_f(ν) = b_f + Σ_c max(0, αA_fc − ν_c) [F]: what feature f earns at class prices ν."""
    return problem.b + np.maximum(problem.alpha * problem.A - prices[None, :], 0.0).sum(axis=1)


def lagrangian_bound(problem: AssignmentProblem, prices: np.ndarray) -> float:
    """U(ν) above: a proven upper bound for any prices ν."""
    earn = feature_earnings(problem, prices)
    top = -np.partition(-earn, problem.n - 1)[: problem.n]
    return float(problem.k * prices.sum() + top.sum())


def lp_prices(problem: AssignmentProblem, top_m: int = 100) -> np.ndarray:
    """Optimal class prices ν of the LP relaxation restricted to each class's top-m features.

    The restriction is exact for the prices: the slots a class fills outside its top m are
    valued at its (m+1)-th value, and ν_c ≥ that value, which makes those features earn 0.
    """
    F, C = problem.A.shape
    k, n = problem.k, problem.n
    a = problem.alpha * problem.A
    m = min(top_m, F - 1)
    if m < 1:
        return np.full(C, a.min())
    order = np.argsort(-a, axis=0, kind="stable")
    top = order[:m].T  # [C, m]
    fill = a[order[m], np.arange(C)]
    gain = (np.take_along_axis(a.T, top, axis=1) - fill[:, None]).ravel()
    num_x = C * m
    # variables: s (F), then x (C·m); rows: x_fc − s_f ≤ 0, Σ_f x_fc ≤ k; Σ s = n
    x_index = F + np.arange(num_x)
    link = sp.csr_matrix(
        (
            np.r_[np.ones(num_x), -np.ones(num_x)],
            (np.r_[np.arange(num_x), np.arange(num_x)], np.r_[x_index, top.ravel()]),
        ),
        shape=(num_x, F + num_x),
    )
    slots = sp.csr_matrix(
        (np.ones(num_x), (np.repeat(np.arange(C), m), x_index)), shape=(C, F + num_x)
    )
    result = linprog(
        -np.r_[problem.b, gain],
        A_ub=sp.vstack([link, slots]).tocsr(),
        b_ub=np.r_[np.zeros(num_x), np.full(C, k)],
        A_eq=sp.csr_matrix(np.r_[np.ones(F), np.zeros(num_x)][None, :]),
        b_eq=[n],
        bounds=(0.0, 1.0),
        method="highs",
    )
    if result.status != 0 or result.ineqlin is None:
        return fill  # ν = the fill values are valid prices, just weaker
    duals = -np.asarray(result.ineqlin.marginals)[num_x:]  # ≥ 0 for a maximisation's ≤ rows
    return fill + np.maximum(duals, 0.0)


def refine_prices(
    problem: AssignmentProblem, prices: np.ndarray, *, iterations: int = 3000, step: float = 0.01
) -> tuple[np.ndarray, float]:
    """Subgradient descent on U(ν) from `prices`; returns the best prices and U there.

    The top-m LP's prices are optimal for *its* valuation, which rates a class's empty slots
    at its (m+1)-th value; the full U(ν) rewards lowering them. A subgradient of U at ν is
    k − (number of the n best-earning features with a_fc > ν_c), per class.
    """
    a = problem.alpha * problem.A
    n, k = problem.n, problem.k
    best_prices, best = prices, lagrangian_bound(problem, prices)
    nu = prices.copy()
    for it in range(iterations):
        earn = problem.b + np.maximum(a - nu[None, :], 0.0).sum(axis=1)
        chosen = np.argpartition(-earn, n - 1)[:n]
        value = k * float(nu.sum()) + float(earn[chosen].sum())
        if value < best:
            best, best_prices = value, nu.copy()
        nu = nu - step / np.sqrt(1.0 + it / 50.0) * (k - (a[chosen] > nu[None, :]).sum(axis=0))
    return best_prices, lagrangian_bound(problem, best_prices)


def no_redundancy_bound(
    problem: AssignmentProblem, top_m: int = 100, iterations: int = 3000
) -> float:
    """The LP bound without Z_R (prices from the top-m LP, refined), certified by `lagrangian_bound`."""
    return refine_prices(problem, lp_prices(problem, top_m), iterations=iterations)[1]
