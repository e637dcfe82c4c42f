"""The incumbent: greedy construction plus a tabu swap search over the selection.

For a fixed selection S the best W is closed-form (each class's k best features of S), so the
search is over S only, with f(S) = α Σ_c top-k_c(S) + Σ_{f∈S} b_f − Z_R(S). A swap (f out,
g in) changes class c's top-k sum by

    −[f ∈ top_c] (A[f,c] − t⁺_c) + max(0, A[g,c] − t'_c),   t'_c = t⁺_c if f ∈ top_c else t_c,

with t_c, t⁺_c the k-th and (k+1)-th best values of S for class c; so all n·(F−n) swaps are
evaluated at once with a few matrix operations. Tabu search (recently swapped features may
not move back) walks through local optima; when it stalls, it restarts from the best
selection with a few random swaps. The uniqueness of class sets is restored at the end
(`class_sets.best_class_sets`); the search value ignores it, which is an upper bound on the
value with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.solver.problem import AssignmentProblem

#: stands in for "no (k+1)-th feature" when n == k; large enough to cancel exactly in float64
_MISSING = -1.0e6


class SelectionState:
    """A selection with the per-class order statistics the swap deltas need."""

    def __init__(self, problem: AssignmentProblem, selected: np.ndarray):
        self.problem = problem
        self.scaled = problem.alpha * problem.A  # [F, C]
        self.mask = np.zeros(problem.num_features, dtype=bool)
        self.mask[np.asarray(selected, dtype=np.int64)] = True
        self.redundancy = problem.penalty[:, self.mask].sum(axis=1)  # Σ_{h∈S} R̃[·, h]
        self._refresh()

    @property
    def selected(self) -> np.ndarray:
        return np.flatnonzero(self.mask)

    def _refresh(self) -> None:
        k = self.problem.k
        sel = self.selected
        block = self.scaled[sel]  # [n, C]
        order = np.argsort(-block, axis=0, kind="stable")
        self.top_rows = sel[order[:k]]  # [k, C] feature indices of each class's top-k
        ranked = np.take_along_axis(block, order, axis=0)
        self.t_k = ranked[k - 1]
        self.t_next = ranked[k] if len(sel) > k else np.full(block.shape[1], _MISSING)
        self.value = (
            float(ranked[:k].sum())
            + float(self.problem.b[sel].sum())
            - 0.5 * float(self.redundancy[sel].sum())
        )

    def swap_deltas(self, candidates: np.ndarray) -> np.ndarray:
        """Objective change of every swap: [n, len(candidates)] for (selected[i] out, candidates[j] in)."""
        sel = self.selected
        cand = self.scaled[candidates]  # [m, C]
        gain_k = np.maximum(cand - self.t_k, 0.0).sum(axis=1)  # [m]
        deltas = np.empty((len(sel), len(candidates)))
        pen = self.problem.penalty
        b = self.problem.b
        for i, f in enumerate(sel):
            classes = np.flatnonzero((self.top_rows == f).any(axis=0))
            loss = float((self.scaled[f, classes] - self.t_next[classes]).sum())
            sub = cand[:, classes]
            corr = (
                np.maximum(sub - self.t_next[classes], 0.0)
                - np.maximum(sub - self.t_k[classes], 0.0)
            ).sum(axis=1)
            deltas[i] = -loss + gain_k + corr
        deltas += b[candidates][None, :] - b[sel][:, None]
        deltas += (
            self.redundancy[sel][:, None]
            - self.redundancy[candidates][None, :]
            + pen[np.ix_(sel, candidates)]
        )
        return deltas

    def swap(self, out: int, into: int) -> None:
        self.mask[out] = False
        self.mask[into] = True
        pen = self.problem.penalty
        self.redundancy += pen[:, into] - pen[:, out]
        self._refresh()


def greedy_selection(problem: AssignmentProblem, start: np.ndarray | None = None) -> np.ndarray:
    """Add features one by one by best marginal gain (classes' empty slots valued at 0)."""
    F, C = problem.A.shape
    scaled = problem.alpha * problem.A
    chosen = [] if start is None else [int(f) for f in start][: problem.n]
    slots = np.zeros((problem.k, C))  # each class's current k best values, ascending
    for f in chosen:
        slots[0] = np.maximum(slots[0], scaled[f])
        slots.sort(axis=0)
    redundancy = problem.penalty[:, chosen].sum(axis=1) if chosen else np.zeros(F)
    available = np.ones(F, dtype=bool)
    available[chosen] = False
    while len(chosen) < problem.n:
        gain = np.maximum(scaled - slots[0], 0.0).sum(axis=1) + problem.b - redundancy
        gain[~available] = -np.inf
        f = int(np.argmax(gain))
        chosen.append(f)
        available[f] = False
        slots[0] = np.maximum(slots[0], scaled[f])
        slots.sort(axis=0)
        redundancy += problem.penalty[:, f]
    return np.array(sorted(chosen))


@dataclass(frozen=True)
class SearchResult:
    selected: np.ndarray  #: best selection found (sorted feature indices)
    value: float  #: its value without the uniqueness constraint
    time_to_best_s: float
    iterations: int


def tabu_search(
    problem: AssignmentProblem,
    start: np.ndarray,
    *,
    time_limit: float,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    stall_iterations: int = 200,
    max_fruitless_restarts: int | None = 10,
    on_improve: Callable[[float, np.ndarray], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Tabu swap search from `start` (restarts near the best when it stalls).

    Stops at `time_limit` seconds, or after `max_fruitless_restarts` restarts in a row that did
    not improve the best selection (None: only the time limit), or when `should_stop()`.
    """
    begin = time.monotonic()
    rng = np.random.default_rng(seed)
    F, n = problem.num_features, problem.n
    pool = np.arange(F) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    state = SelectionState(problem, start)
    best_sel, best_value, best_time = state.selected.copy(), state.value, 0.0
    tabu_until = np.zeros(F, dtype=np.int64)
    tenure = max(3, min(n // 3, 15))
    since_best = 0
    fruitless = 0
    iteration = 0
    if n == F or len(np.setdiff1d(pool, best_sel)) == 0:
        return SearchResult(best_sel, best_value, 0.0, 0)
    while time.monotonic() - begin < time_limit and not (should_stop and should_stop()):
        iteration += 1
        outside = pool[~state.mask[pool]]
        deltas = state.swap_deltas(outside)
        sel = state.selected
        aspiring = state.value + deltas > best_value + 1e-9
        allowed = (tabu_until[sel][:, None] < iteration) & (
            tabu_until[outside][None, :] < iteration
        )
        deltas = np.where(allowed | aspiring, deltas, -np.inf)
        i, j = np.unravel_index(int(np.argmax(deltas)), deltas.shape)
        if not np.isfinite(deltas[i, j]):
            tabu_until[:] = 0
            continue
        out, into = int(sel[i]), int(outside[j])
        state.swap(out, into)
        tabu_until[out] = iteration + tenure + int(rng.integers(0, tenure))
        tabu_until[into] = iteration + tenure // 2
        if state.value > best_value + 1e-9:
            best_sel, best_value = state.selected.copy(), state.value
            best_time = time.monotonic() - begin
            since_best = 0
            fruitless = 0
            if on_improve is not None:
                on_improve(best_value, best_sel)
        else:
            since_best += 1
        if since_best >= stall_iterations:  # restart near the best with a few random swaps
            fruitless += 1
            if max_fruitless_restarts is not None and fruitless > max_fruitless_restarts:
                break
            state = SelectionState(problem, best_sel)
            for _ in range(max(2, n // 10)):
                outside = pool[~state.mask[pool]]
                state.swap(int(rng.choice(state.selected)), int(rng.choice(outside)))
            tabu_until[:] = 0
            since_best = 0
    return SearchResult(best_sel, best_value, best_time, iteration)
