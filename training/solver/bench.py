"""The plain SCIP model of docs/method.md §3, the baseline `python -m training solver-bench` measures
the solver against: binary s and W, one product variable per penalised pair, uniqueness added
iteratively for the classes that violate it, as the authors' code does."""

from __future__ import annotations

import time

import numpy as np
from pyscipopt import Model, quicksum

from training.solver.problem import CHECK_NAMES, AssignmentProblem
from training.solver.solve import BOUND_SOURCES, AssignmentResult, relative_gap

#: the plain model holds one Python object per W variable and per row; past this it does not fit
#: in this project's 23 GB machines (2048x200 = 409,600 ran; 2048x1000 was killed while building)
PLAIN_MAX_W = 1_000_000


def plain_scip(problem: AssignmentProblem, *, time_limit: float, seed: int = 0) -> dict:
    """docs/method.md §3 as one SCIP model with no reductions and no heuristic start.

    Uniqueness is added iteratively (the reference code's scheme): after each solve, every pair
    of classes sharing a feature set T gets the no-good Σ_{f∈T} (W_fc + W_fd) ≤ 2k − 1, and it is
    solved again while time remains. The last dual bound is a valid bound (fewer constraints).
    """
    begin = time.monotonic()
    F, C = problem.A.shape
    n, k = problem.n, problem.k
    model = Model("qpm_plain")
    model.hideOutput()
    s = model.addMatrixVar((F,), vtype="B", name="s", obj=problem.b)
    W = model.addMatrixVar((F, C), vtype="B", name="W", obj=problem.alpha * problem.A)
    model.addCons(quicksum(s.tolist()) == n)
    model.addMatrixCons(W <= s[:, None])
    model.addMatrixCons(W.sum(axis=0) == k)
    s_list, W_list = s.tolist(), W.tolist()
    rows, cols = np.nonzero(np.triu(problem.penalty, 1))
    for f, g in zip(rows.tolist(), cols.tolist()):
        y = model.addVar(vtype="C", lb=0.0, ub=1.0, obj=-float(problem.penalty[f, g]))
        model.addCons(y >= s_list[f] + s_list[g] - 1)
    model.setMaximize()
    model.setParam("randomization/randomseedshift", int(seed))
    model.setParam("parallel/maxnthreads", 1)
    statuses = {"optimal": "optimal", "timelimit": "time_limit", "userinterrupt": "interrupted"}
    rounds, selected, weight, bound, status = 0, None, None, None, "no solution"
    while True:
        remaining = time_limit - (time.monotonic() - begin)
        if remaining <= 0:
            break
        model.setParam("limits/time", remaining)
        model.optimize()
        rounds += 1
        status = statuses.get(str(model.getStatus()), str(model.getStatus()))
        bound = float(model.getDualbound())
        if model.getNSols() == 0:
            break
        sol = model.getBestSol()
        s_val = np.array([model.getSolVal(sol, v) for v in s_list]) > 0.5
        W_val = np.array([[model.getSolVal(sol, v) for v in row] for row in W_list]) > 0.5
        selected = np.flatnonzero(s_val)
        weight = W_val[selected].T.astype(np.int8)
        groups: dict[tuple[int, ...], list[int]] = {}
        for c in range(C):
            groups.setdefault(tuple(np.flatnonzero(W_val[:, c])), []).append(c)
        collisions = [(T, cs) for T, cs in groups.items() if len(cs) > 1]
        if not collisions or status != "optimal":
            break
        model.freeTransform()
        for T, cs in collisions:
            for i, c in enumerate(cs):
                for d in cs[i + 1 :]:
                    model.addCons(quicksum(W_list[f][c] + W_list[f][d] for f in T) <= 2 * k - 1)
    found = selected is not None
    objective = problem.terms(selected, weight).total if found else None
    return {
        "solver": "plain SCIP",
        "objective": objective,
        "bound": bound,
        "gap": relative_gap(objective, bound) if found else None,
        "status": status,
        "wall_s": round(time.monotonic() - begin, 3),
        "time_to_best_s": None,
        "rounds": rounds,
        "checks": problem.checks(selected, weight) if found else dict.fromkeys(CHECK_NAMES, False),
    }


def proven_bounds(result: AssignmentResult) -> dict[str, float]:
    """Each proven bound of a solve by its source ("relaxation", "lagrangian", "scip")."""
    return {
        name: result.details[f"{name}_bound"]
        for name in BOUND_SOURCES
        if f"{name}_bound" in result.details
    }
