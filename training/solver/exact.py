"""The exact model: SCIP over the selection s, with a relaxed valuation made exact lazily.

Because the best W for a fixed selection is closed-form, the model branches on s only:

    max  Σ_c [k·a_c(m+1) + Σ_{f ∈ top_m(c)} (a_fc − a_c(m+1)) x_fc] + Σ_f b_f s_f
         − Σ_(c,t) θ_ct z_ct − ½ Σ_f u_f − δ
    s.t. Σ_f s_f = n,  x_fc ≤ s_f,  Σ_f x_fc ≤ k,
         z_ct ≥ j·X_ct − j(j+1)/2  (j = 1..),  X_ct = Σ_{f ∈ top_t(c)} s_f   (`layers`),
         star cuts on u (separated on demand, `star_cuts`),

with a = (1000/(kC))·A and a_c(m+1) the best value outside class c's top m. Z_R is split
into the class layers (θ, counted per class prefix) and the residual ρ = R̃ − layers on pairs,
paid through u_f = s_f Σ_g ρ_fg s_g.

For a 0/1 selection the model value is an *upper bound* on the true objective: a missing
class slot is valued at a_c(m+1) (the best it could be), the layers' pieces of binom(X, 2)
stop at `max_lines`, and the uniqueness of class sets is not modelled. A constraint handler
closes the gap lazily with the exact oracle: at an integral s whose value exceeds the true
f(S) it first adds the star cuts that are tight at S, then δ ≥ gap_S · (Σ_{f∈S} s_f − n + 1),
which is exactly gap_S at S and vacuous elsewhere. So every solution SCIP accepts has its
true value, and SCIP's dual bound is a proven upper bound on the problem of docs/method.md §3.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pyscipopt import SCIP_EVENTTYPE, SCIP_RESULT, Conshdlr, Eventhdlr, Model, quicksum

from training.solver import star_cuts
from training.solver.layers import class_layers, pairs_binomial
from training.solver.oracle import Assignment, SelectionOracle
from training.solver.problem import AssignmentProblem

#: a solution "exceeds" its true value by more than this (absolute + relative) → cut
_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ModelSize:
    """How much of the problem the model holds explicitly (the rest is handled lazily)."""

    top_m: int = 100  #: x variables per class
    tail_buckets: tuple[int, ...] = (2, 4, 8)  #: rank boundaries beyond top_m, as multiples of it
    layer_depth: int = 20  #: class layers over each class's top features (0: none)
    max_lines: int = 12  #: linear pieces of binom(X, 2) per layer
    cuts_per_round: int = 200  #: star cuts added per separation round


@dataclass(frozen=True)
class ExactOutcome:
    best: Assignment | None
    dual_bound: float
    status: str
    nodes: int
    time_to_best_s: float | None  #: when SCIP last improved its incumbent (None: never)
    num_cuts: int  #: star cuts and exact-value cuts added


class _ExactValue(Conshdlr):
    """Separates star cuts and makes the value of every integral selection its true value."""

    def __init__(self, owner: ExactModel):
        self.owner = owner

    def _values(self, solution, variables) -> np.ndarray:
        return np.array([self.model.getSolVal(solution, v) for v in variables])

    def _selection(self, solution) -> np.ndarray | None:
        values = self._values(solution, self.owner.s_list)
        if np.any(np.minimum(np.abs(values), np.abs(values - 1.0)) > 1e-6):
            return None
        selected = np.flatnonzero(values > 0.5)
        return selected if len(selected) == self.owner.problem.n else None

    def conscheck(
        self,
        constraints,
        solution,
        checkintegrality,
        checklprows,
        printreason,
        completely,
        **kwargs,
    ):
        selected = self._selection(solution)
        if selected is None:
            return {"result": SCIP_RESULT.FEASIBLE}
        claimed = self.model.getSolObjVal(solution)
        true = self.owner.oracle(selected).value
        if claimed > true + _TOLERANCE * max(1.0, abs(true)):
            return {"result": SCIP_RESULT.INFEASIBLE}
        return {"result": SCIP_RESULT.FEASIBLE}

    def _add(self, cut: star_cuts.StarCut, as_row: bool) -> None:
        owner = self.owner
        n = owner.problem.n
        s, u = owner.s_list, owner.u_list
        terms = [(s[int(g)], -float(c)) for g, c in zip(cut.partners, cut.coefficients)]
        pn = cut.price * n
        if as_row:
            row = self.model.createEmptyRowUnspec(
                name=f"star_{owner.num_cuts}", lhs=-pn, rhs=None, local=False, removable=True
            )
            self.model.cacheRowExtensions(row)
            self.model.addVarToRow(row, u[cut.feature], 1.0)
            if pn:
                self.model.addVarToRow(row, s[cut.feature], -pn)
            for var, coef in terms:
                self.model.addVarToRow(row, var, coef)
            self.model.flushRowExtensions(row)
            self.model.addCut(row, forcecut=True)
            self.model.releaseRow(row)
        else:
            self.model.addCons(
                u[cut.feature] - pn * s[cut.feature] + quicksum(c * v for v, c in terms) >= -pn,
                name=f"star_{owner.num_cuts}",
                removable=False,
            )
        owner.num_cuts += 1

    def conssepalp(self, constraints, nusefulconss):
        owner = self.owner
        cuts = star_cuts.most_violated(
            owner.rho,
            self._values(None, owner.s_list),
            self._values(None, owner.u_list),
            owner.problem.n,
            max_cuts=owner.size.cuts_per_round,
        )
        for cut in cuts:
            self._add(cut, as_row=True)
        return {"result": SCIP_RESULT.SEPARATED if cuts else SCIP_RESULT.DIDNOTFIND}

    def _enforce(self, as_row: bool):
        owner = self.owner
        selected = self._selection(None)
        if selected is None:
            return {"result": SCIP_RESULT.FEASIBLE}
        u = self._values(None, owner.u_list)
        exact_u = owner.rho[np.ix_(selected, selected)].sum(axis=1)
        short = [
            f
            for f, have, need in zip(selected, u[selected], exact_u)
            if have < need - _TOLERANCE * max(1.0, need)
        ]
        if short:
            for f in short:
                self._add(star_cuts.exact_cut(owner.rho, int(f), selected), as_row)
            return {"result": SCIP_RESULT.SEPARATED if as_row else SCIP_RESULT.CONSADDED}
        gap = owner.model_value(selected) - owner.oracle(selected).value
        delta = self.model.getSolVal(None, owner.delta)
        if delta >= gap - _TOLERANCE * max(1.0, abs(gap)):
            return {"result": SCIP_RESULT.FEASIBLE}
        s = owner.s_list
        self.model.addCons(
            owner.delta >= gap * (quicksum(s[int(f)] for f in selected) - (len(selected) - 1)),
            name=f"exact_value_{owner.num_cuts}",
            removable=False,
        )
        owner.num_cuts += 1
        return {"result": SCIP_RESULT.CONSADDED}

    def consenfolp(self, constraints, nusefulconss, solinfeasible):
        return self._enforce(as_row=True)

    def consenfops(self, constraints, nusefulconss, solinfeasible, objinfeasible):
        return self._enforce(as_row=False)

    def conslock(self, constraint, locktype, nlockspos, nlocksneg):
        # this handler bounds the objective itself, so any variable may matter to it in either
        # direction: locking all of them keeps presolve's dual reductions from fixing u or δ
        # (which no linear row bounds before the first cut) and cutting off optimal selections
        for var in self.owner.all_variables:
            self.model.addVarLocksType(var, locktype, nlockspos + nlocksneg, nlockspos + nlocksneg)


class _Progress(Eventhdlr):
    """Reports (incumbent, bound) on new solutions and every few seconds."""

    def __init__(self, owner: ExactModel, callback, every_s: float):
        self.owner, self.callback, self.every_s = owner, callback, every_s
        self.last = 0.0

    def eventinit(self):
        self.model.catchEvent(SCIP_EVENTTYPE.BESTSOLFOUND, self)
        self.model.catchEvent(SCIP_EVENTTYPE.NODESOLVED, self)

    def eventexit(self):
        self.model.dropEvent(SCIP_EVENTTYPE.BESTSOLFOUND, self)
        self.model.dropEvent(SCIP_EVENTTYPE.NODESOLVED, self)

    def eventexec(self, event):
        now = time.monotonic()
        if event.getType() == SCIP_EVENTTYPE.BESTSOLFOUND:
            self.owner.time_of_best = now
        elif now - self.last < self.every_s:
            return
        self.last = now
        if self.callback is not None:
            self.callback(self.model.getPrimalbound(), self.model.getDualbound())


class ExactModel:
    """The SCIP model above for one problem; `solve` may be called once."""

    def __init__(
        self,
        problem: AssignmentProblem,
        size: ModelSize | None = None,
        *,
        oracle: SelectionOracle | None = None,
    ):
        self.problem = problem
        self.size = size = size or ModelSize()
        self.oracle = oracle or SelectionOracle(problem)
        self.num_cuts = 0
        self.time_of_best: float | None = None
        F, C = problem.A.shape
        n, k = problem.n, problem.k
        a = problem.alpha * problem.A
        m = min(size.top_m, F)
        order = np.argsort(-a, axis=0, kind="stable")
        self.top = order[:m].T  # [C, m]
        self.exactly_k = m == F  # every feature listed: Σ_f x_fc = k, no fill value needed
        ranked = np.take_along_axis(a, order, axis=0).T  # [C, F] each class's values, descending
        self.fill = ranked[:, m] if m < F else np.zeros(C)  # a_c(m+1)
        self.gain = ranked[:, :m] - self.fill[:, None]  # [C, m]
        # tail buckets: w_cj ≤ min(k, N_c(b_j)) with N_c(b) = |S ∩ top_b(c)|, worth v_(j−1) − v_j
        self.bucket_ends = (
            [] if self.exactly_k else sorted({min(F, m * q) for q in size.tail_buckets} - {F})
        )
        values = [self.fill] + [ranked[:, e] for e in self.bucket_ends]
        self.bucket_gain = np.array(
            [values[j] - values[j + 1] for j in range(len(self.bucket_ends))]
        )  # [J, C]
        self.base = (
            k * values[-1] if not self.exactly_k else np.zeros(C)
        )  # k · first value of the last bucket
        self.order = order
        self.layers = class_layers(problem, size.layer_depth if n >= 2 else 0)
        self.layer_top = order[: max(1, size.layer_depth)].T  # [C, depth]
        self.layer_lines = np.minimum(self.layers.depth - 1, min(n - 1, size.max_lines))
        # what the layers do not account for is paid through the stars (never below 0)
        self.rho = np.maximum(problem.penalty - self.layers.captured, 0.0)

        model = Model("qpm_assignment")
        model.hideOutput()
        s = model.addMatrixVar((F,), vtype="B", name="s", obj=problem.b)
        x = model.addMatrixVar((C, m), vtype="C", name="x", lb=0.0, ub=1.0, obj=self.gain)
        u = model.addMatrixVar((F,), vtype="C", name="u", lb=0.0, obj=-0.5)
        self.delta = model.addVar(name="delta", vtype="C", lb=0.0, obj=-1.0)
        model.addObjoffset(float(self.base.sum()))
        model.addCons(quicksum(s.tolist()) == n, name="cardinality")
        model.addMatrixCons(x <= s[self.top], name="uses_selected")
        if self.exactly_k:
            model.addMatrixCons(x.sum(axis=1) == k, name="k_per_class")
        else:
            model.addMatrixCons(x.sum(axis=1) <= k, name="k_per_class")
        self.w = []
        for j, end in enumerate(self.bucket_ends):
            w = model.addMatrixVar(
                (C,), vtype="C", name=f"w{j}", lb=0.0, ub=float(k), obj=self.bucket_gain[j]
            )
            s_all = s.tolist()
            for c, w_c in enumerate(w.tolist()):
                if 2 * end <= F:
                    counted = quicksum(s_all[f] for f in order[:end, c].tolist())
                else:  # fewer terms: n minus the selected features outside the top `end`
                    counted = n - quicksum(s_all[f] for f in order[end:, c].tolist())
                model.addCons(w_c <= counted, name=f"bucket_{j}_{c}")
            self.w.append(w)
        self.prefix = self.z = None
        if len(self.layers.theta):
            depth = int(self.layers.depth.max())
            prefix = model.addMatrixVar((C, depth), vtype="C", name="prefix", lb=0.0, ub=float(n))
            model.addMatrixCons(prefix[:, 0] == s[self.layer_top[:, 0]], name="prefix_first")
            if depth > 1:
                model.addMatrixCons(
                    prefix[:, 1:] == prefix[:, :-1] + s[self.layer_top[:, 1:depth]], name="prefix"
                )
            z = model.addMatrixVar(
                (len(self.layers.theta),), vtype="C", name="z", lb=0.0, obj=-self.layers.theta
            )
            z_list, prefix_list = z.tolist(), prefix.tolist()
            for i, (c, t, lines) in enumerate(
                zip(
                    self.layers.classes.tolist(),
                    self.layers.depth.tolist(),
                    self.layer_lines.tolist(),
                )
            ):
                for j in range(1, lines + 1):
                    model.addCons(
                        z_list[i] >= j * prefix_list[c][t - 1] - j * (j + 1) / 2.0,
                        name=f"layer_{i}_{j}",
                    )
            self.prefix, self.z = prefix, z
        for var in s.tolist():
            model.chgVarBranchPriority(var, 10)
        model.setMaximize()
        self.model = model
        self.s_list, self.u_list = s.tolist(), u.tolist()
        self.x, self.u = x, u
        self.all_variables = model.getVars()
        handler = _ExactValue(self)
        model.includeConshdlr(
            handler,
            "exact_value",
            "star cuts and true objective of selections",
            sepapriority=100,
            enfopriority=-1_000_000,
            chckpriority=-1_000_000,
            sepafreq=1,
            needscons=True,
        )
        # one constraint of the handler: without it SCIP never asks the handler for its locks
        model.addPyCons(model.createCons(handler, "exact_value"))

    def _class_part(self, chosen: np.ndarray) -> float:
        k = self.problem.k
        # "≤ k" slots have gains ≥ 0 (an unused slot is worth 0); with all F listed, exactly k
        gains = np.where(chosen[self.top], self.gain, -np.inf if self.exactly_k else 0.0)
        value = float(-np.partition(-gains, k - 1, axis=1)[:, :k].sum()) + float(self.base.sum())
        for j, count in enumerate(self._bucket_counts(chosen)):
            value += float(self.bucket_gain[j] @ count)
        return value

    def _bucket_counts(self, chosen: np.ndarray) -> list[np.ndarray]:
        """min(k, N_c(b_j)) for each tail bucket j: its w at a 0/1 selection."""
        return [
            np.minimum(self.problem.k, chosen[self.order[:end]].sum(axis=0)).astype(float)
            for end in self.bucket_ends
        ]

    def _layer_counts(self, chosen: np.ndarray) -> np.ndarray:
        return np.cumsum(chosen[self.layer_top], axis=1).astype(float)

    def model_value(self, selected: np.ndarray) -> float:
        """The model's (relaxed) value of a 0/1 selection, with exact stars and without δ."""
        chosen = np.zeros(self.problem.num_features, dtype=bool)
        chosen[selected] = True
        layer_part = 0.0
        if len(self.layers.theta):
            counts = self._layer_counts(chosen)[self.layers.classes, self.layers.depth - 1]
            layer_part = float(self.layers.theta @ pairs_binomial(counts, self.layer_lines))
        stars = 0.5 * float(self.rho[np.ix_(selected, selected)].sum())
        return self._class_part(chosen) + float(self.problem.b[selected].sum()) - stars - layer_part

    def add_start(self, assignment: Assignment) -> bool:
        """Give SCIP a feasible solution; False if SCIP's check rejects it."""
        sel = assignment.selected
        chosen = np.zeros(self.problem.num_features, dtype=bool)
        chosen[sel] = True
        model = self.model
        sol = model.createSol()

        def put(variables, values) -> None:
            for var, v in zip(variables, np.asarray(values, dtype=float).ravel().tolist()):
                model.setSolVal(sol, var, v)

        put(self.s_list, chosen)
        k = self.problem.k
        gains = np.where(chosen[self.top], self.gain, -np.inf)
        best = np.argsort(-gains, axis=1, kind="stable")[:, :k]
        rows = np.arange(gains.shape[0])[:, None]
        x_val = np.zeros(gains.shape)
        x_val[rows, best] = chosen[self.top][rows, best]
        put(self.x.flatten().tolist(), x_val)
        put(self.u_list, np.where(chosen, self.rho[:, sel].sum(axis=1), 0.0))
        for w, count in zip(self.w, self._bucket_counts(chosen)):
            put(w.tolist(), count)
        if self.prefix is not None:
            counts = self._layer_counts(chosen)
            put(self.prefix.flatten().tolist(), counts[:, : self.prefix.shape[1]])
            put(
                self.z.tolist(),
                pairs_binomial(
                    counts[self.layers.classes, self.layers.depth - 1], self.layer_lines
                ),
            )
        model.setSolVal(sol, self.delta, max(0.0, self.model_value(sel) - assignment.value))
        feasible = bool(model.checkSol(sol, printreason=False, original=True))
        return feasible and bool(model.addSol(sol, free=True))

    def solve(
        self,
        *,
        time_limit: float,
        mip_gap: float,
        seed: int,
        progress: Callable[[float, float], None] | None = None,
        every_s: float = 10.0,
    ) -> ExactOutcome:
        model = self.model
        model.setParam("limits/time", max(0.0, float(time_limit)))
        model.setParam("limits/gap", float(mip_gap))
        model.setParam("randomization/randomseedshift", int(seed))
        model.setParam("parallel/maxnthreads", 1)
        model.includeEventhdlr(
            _Progress(self, progress, every_s), "progress", "incumbent and bound"
        )
        start = time.monotonic()
        model.optimize()
        best = None
        if model.getNSols() > 0:
            values = np.array([model.getSolVal(model.getBestSol(), v) for v in self.s_list])
            best = self.oracle(np.flatnonzero(values > 0.5))
        return ExactOutcome(
            best=best,
            dual_bound=float(model.getDualbound()),
            status=str(model.getStatus()),
            nodes=int(model.getNNodes()),
            time_to_best_s=None if self.time_of_best is None else self.time_of_best - start,
            num_cuts=self.num_cuts,
        )
