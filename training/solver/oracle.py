"""The true value of a selection, with its best distinct class sets (cached): the exactness oracle.

Both the heuristic's final step and the exact model's constraint handler need, for a selection
S, the best W satisfying every constraint of docs/method.md §3 and its objective. That is
`class_sets.best_class_sets` on A restricted to S, evaluated with `AssignmentProblem.terms`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.solver.class_sets import best_class_sets
from training.solver.problem import AssignmentProblem, ObjectiveTerms


@dataclass(frozen=True)
class Assignment:
    """A feasible assignment: sorted selected features, [C, n] binary weight, its objective."""

    selected: np.ndarray
    weight: np.ndarray
    terms: ObjectiveTerms
    repaired: bool  #: the classes' individual best sets collided and were made distinct

    @property
    def value(self) -> float:
        return self.terms.total


class SelectionOracle:
    """Best feasible assignment of a selection; remembers the ones it has computed."""

    def __init__(self, problem: AssignmentProblem):
        self.problem = problem
        self._cache: dict[tuple[int, ...], Assignment] = {}

    def __call__(self, selected) -> Assignment:
        key = tuple(sorted(int(f) for f in selected))
        found = self._cache.get(key)
        if found is None:
            sel = np.array(key, dtype=np.int64)
            weight, repaired = best_class_sets(self.problem.A[sel], self.problem.k)
            found = Assignment(sel, weight, self.problem.terms(sel, weight), repaired)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = found
        return found
