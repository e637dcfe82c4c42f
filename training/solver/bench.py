"""Benchmark the assignment solver on synthetic instances with the paper's shapes.

The instance is simulated (`training.solver.instances`: class-correlated post-ReLU feature
maps turned into A, R, b by `training.statistics`, as the pipeline does). `--baseline` also
solves it with the plain SCIP model of method.md §3 — binary s and W, one product variable per
penalised pair, uniqueness added iteratively for the classes that violate it, as the authors'
code does — under the same time limit on the same machine, so the comparison is a ratio.

Example: python -m training solver-bench --shape 2048x200 --n 50 --k 5 --time-limit 600 --baseline
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time

import numpy as np
from pyscipopt import Model, quicksum

from qpm_zoo.formatting import format_table
from training.solver.instances import InstanceSpec, generate_statistics
from training.solver.problem import CHECK_NAMES, AssignmentProblem
from training.solver.solve import BOUND_SOURCES, AssignmentResult, relative_gap, solve_assignment

#: the plain model holds one Python object per W variable and per row; past this it does not fit
#: in this project's 23 GB machines (2048x200 = 409,600 ran; 2048x1000 was killed while building)
PLAIN_MAX_W = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape", required=True, metavar="FxC", help="features x classes, e.g. 2048x200"
    )
    parser.add_argument("--n", type=int, required=True, help="features to select")
    parser.add_argument("--k", type=int, required=True, help="features per class")
    parser.add_argument(
        "--time-limit", type=float, required=True, metavar="S", help="seconds per solver"
    )
    parser.add_argument("--seed", type=int, default=0, help="instance and solver seed (default 0)")
    parser.add_argument(
        "--samples-per-class", type=int, default=30, help="simulated images per class (default 30)"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also run the plain SCIP model of method.md §3"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per run instead of a table"
    )


def parse_shape(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"--shape must look like 2048x200 (features x classes), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def plain_scip(problem: AssignmentProblem, *, time_limit: float, seed: int = 0) -> dict:
    """method.md §3 as one SCIP model with no reductions and no heuristic start.

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


def run(args: argparse.Namespace) -> int:
    prog = "python -m training solver-bench"
    try:
        F, C = parse_shape(args.shape)
        spec = InstanceSpec(
            num_features=F, num_classes=C, samples_per_class=args.samples_per_class, seed=args.seed
        )
        if not args.time_limit > 0:
            raise ValueError(f"--time-limit must be positive, got {args.time_limit}")
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if not args.json:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    stats = generate_statistics(spec, progress=not args.json)
    base = {
        "shape": f"{F}x{C}",
        "n": args.n,
        "k": args.k,
        "time_limit": args.time_limit,
        "seed": args.seed,
    }
    try:
        result = solve_assignment(
            stats.A,
            stats.R,
            stats.b,
            args.n,
            args.k,
            time_limit=args.time_limit,
            mip_gap=0.0,
            seed=args.seed,
        )
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    runs = [
        {
            **base,
            "solver": "qpm-zoo",
            "objective": result.objective,
            "bound": result.bound,
            "bound_source": result.details.get("bound_source"),
            "bounds": proven_bounds(result),
            "gap": result.gap,
            "status": result.status,
            "wall_s": round(result.wall_s, 3),
            "time_to_best_s": round(result.time_to_best_s, 3),
            "incumbent_source": result.incumbent_source,
            "tau": result.tau,
            "checks": result.checks,
        }
    ]
    if args.json:  # printed at once: a long baseline must not hold back (or lose) this run
        print(json.dumps(runs[0], allow_nan=False), flush=True)
    if args.baseline and F * C > PLAIN_MAX_W:
        print(
            f"plain SCIP: skipped: its {F * C:,} binary W variables exceed {PLAIN_MAX_W:,}; "
            "the 2048x1000 model was killed for lack of memory at 21 GB while being built",
            file=sys.stderr,
        )
    elif args.baseline:
        problem = AssignmentProblem.build(stats.A, stats.R, stats.b, args.n, args.k, tau=result.tau)
        runs.append({**base, **plain_scip(problem, time_limit=args.time_limit, seed=args.seed)})
        if args.json:
            print(json.dumps(runs[1], allow_nan=False), flush=True)
    if args.json:
        return 0
    rows = [
        (
            r["solver"],
            r["shape"],
            r["n"],
            r["k"],
            r["time_limit"],
            r["objective"],
            r["bound"],
            None if r["gap"] is None else 100 * r["gap"],
            r["time_to_best_s"],
            r["wall_s"],
            r["status"],
            all(r["checks"].values()),
        )
        for r in runs
    ]
    print(
        format_table(
            [
                "solver",
                "shape",
                "n",
                "k",
                "limit s",
                "objective",
                "bound",
                "gap %",
                "time to best s",
                "wall s",
                "status",
                "checks",
            ],
            rows,
            floatfmt=".5g",
        )
    )
    if len(runs) == 2 and runs[1]["objective"] is not None:
        ours, plain = runs
        print(
            f"\nours - plain: objective {ours['objective'] - plain['objective']:+.4g}, "
            f"bound {ours['bound'] - plain['bound']:+.4g} (lower is better); "
            f"plain SCIP's assignment satisfies every constraint: "
            f"{'yes' if all(plain['checks'].values()) else 'no'}"
        )
    return 0
