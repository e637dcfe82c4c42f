"""The assignment problem of docs/method.md §3: validated inputs, the penalised pairs, the objective.

Everything that solves or checks an assignment goes through `AssignmentProblem`, so there is
one definition of the objective:

    Z_A = (1000 / (k·C)) Σ_{f,c} A[f, c] W_fc,  Z_B = Σ_f b_f s_f,
    Z_R = w_R Σ_{(f,g) ∈ P} R̃[f, g] s_f s_g,   objective = Z_A + Z_B − Z_R,

with P = {f < g : R[f, g] ≥ τ} (τ from `threshold.redundancy_threshold`) and R̃ as in the
authors' code: R minus the smallest nonzero entry of R, divided by the largest entry of that
difference, so every pair in P with R > min nonzero R has R̃ > 0. (When all nonzero entries of R
are equal that division is 0/0; then R̃ = 1 on P.) w_R is the redundancy weight: 1 is the
paper's formulation; docs/method.md §3 says when another value is worth it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.solver.threshold import ThresholdResult, redundancy_threshold, upper_triangle


def _as_matrix(name: str, value, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return array


def _as_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004 (the issue asks for ValueError)
    return int(value)


def validate_inputs(A, R, b, n, k) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Check shapes, values and feasibility before any solving; return (A, upper R, b, n, k).

    R may be the strict upper triangle (as `training.statistics.redundancy` returns it) or
    symmetric; negative entries are set to 0 as docs/method.md §2 prescribes.
    """
    A = _as_matrix("A", A, 2)
    F, C = A.shape
    if F < 1 or C < 1:
        raise ValueError(f"A must have at least one feature and one class, got shape {A.shape}")
    R = _as_matrix("R", R, 2)
    if R.shape != (F, F):
        raise ValueError(f"R must have shape ({F}, {F}) to match A's {F} features, got {R.shape}")
    b = _as_matrix("b", b, 1)
    if b.shape != (F,):
        raise ValueError(f"b must have shape ({F},) to match A's {F} features, got {b.shape}")
    n, k = _as_count("n", n), _as_count("k", k)
    if not 1 <= n <= F:
        raise ValueError(
            f"n (features to select) must be in 1..{F} (the number of features), got {n}"
        )
    if not 1 <= k <= n:
        raise ValueError(f"k (features per class) must be in 1..n={n}, got {k}")
    if math.comb(n, k) < C:
        raise ValueError(
            f"binom(n={n}, k={k}) = {math.comb(n, k)} < {C} classes: the classes' feature sets "
            "cannot all be distinct; increase n or change k"
        )
    lower = np.tril(R, k=-1)
    if np.any(lower != 0) and not np.allclose(R, R.T, rtol=1e-9, atol=1e-12):
        raise ValueError(
            "R must be strictly upper triangular (as training.statistics returns it) or symmetric"
        )
    return A, upper_triangle(R), b, n, k


def scaled_penalty(upper: np.ndarray, tau: float, weight: float = 1.0) -> np.ndarray:
    """Symmetric [F, F] matrix of w_R·R̃ on the penalised pairs P = {R ≥ τ}, 0 elsewhere."""
    nonzero = upper[upper > 0]
    penalty = np.zeros_like(upper)
    if nonzero.size == 0:
        return penalty
    low, span = nonzero.min(), nonzero.max() - nonzero.min()
    in_p = (upper >= tau) & (upper > 0)
    penalty[in_p] = (upper[in_p] - low) / span if span > 0 else 1.0
    return weight * (penalty + penalty.T)


def validate_redundancy_weight(value) -> float:
    """w_R: a finite number ≥ 0 (0 drops Z_R; 1 is the paper's formulation)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"redundancy_weight must be a number, got {value!r}")  # noqa: TRY004
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"redundancy_weight must be a finite number >= 0, got {value!r}")
    return float(value)


#: the constraints of docs/method.md §3, as `AssignmentProblem.checks` names them
CHECK_NAMES = ("sum_s_equals_n", "w_le_s", "k_per_class", "class_sets_distinct")


@dataclass(frozen=True)
class ObjectiveTerms:
    """The objective and its three terms, for one assignment."""

    z_a: float
    z_b: float
    z_r: float

    @property
    def total(self) -> float:
        return self.z_a + self.z_b - self.z_r


@dataclass(frozen=True)
class AssignmentProblem:
    """Validated inputs plus what τ defines; the single place the objective is computed."""

    A: np.ndarray  #: [F, C]
    R: np.ndarray  #: [F, F] strict upper triangle, >= 0
    b: np.ndarray  #: [F]
    n: int
    k: int
    threshold: ThresholdResult
    penalty: np.ndarray  #: [F, F] symmetric w_R·R̃ on P, 0 elsewhere
    redundancy_weight: float = 1.0  #: w_R, the weight of Z_R (1: the paper's formulation)

    @classmethod
    def build(
        cls,
        A,
        R,
        b,
        n,
        k,
        *,
        tau: float | None = None,
        tau_time_limit: float = 60.0,
        seed: int = 0,
        redundancy_weight: float = 1.0,
    ) -> AssignmentProblem:
        """Validate, compute τ (unless given) and the penalised pairs (weighted by w_R; τ and P
        do not depend on it)."""
        A, upper, b, n, k = validate_inputs(A, R, b, n, k)
        redundancy_weight = validate_redundancy_weight(redundancy_weight)
        if tau is None:
            threshold = redundancy_threshold(upper, n, time_limit=tau_time_limit, seed=seed)
        else:
            if not np.isfinite(tau):
                raise ValueError(f"tau must be finite, got {tau}")
            pairs = upper[np.triu_indices(len(upper), k=1)]
            threshold = ThresholdResult(
                tau=float(tau),
                proven_minimal=False,
                infeasible_below=None,
                clique=np.zeros(0, dtype=np.int64),
                num_penalised_pairs=int((pairs >= tau).sum()),
                wall_s=0.0,
            )
        return cls(
            A=A,
            R=upper,
            b=b,
            n=n,
            k=k,
            threshold=threshold,
            penalty=scaled_penalty(upper, threshold.tau, redundancy_weight),
            redundancy_weight=redundancy_weight,
        )

    @property
    def num_features(self) -> int:
        return self.A.shape[0]

    @property
    def num_classes(self) -> int:
        return self.A.shape[1]

    @property
    def alpha(self) -> float:
        """The weight of Z_A: 1000 / (k·C)."""
        return 1000.0 / (self.k * self.num_classes)

    def terms(self, selected: np.ndarray, weight: np.ndarray) -> ObjectiveTerms:
        """Z_A, Z_B, Z_R of a selection (feature indices) and its [C, n] binary weight."""
        selected = np.asarray(selected, dtype=np.int64)
        weight = np.asarray(weight)
        z_a = self.alpha * float((self.A[selected].T * weight).sum())
        z_b = float(self.b[selected].sum())
        z_r = 0.5 * float(self.penalty[np.ix_(selected, selected)].sum())
        return ObjectiveTerms(z_a=z_a, z_b=z_b, z_r=z_r)

    def selection_value_without_uniqueness(self, selected: np.ndarray) -> float:
        """f(s) with each class on its k best selected features (an upper bound on f with
        uniqueness; equal to it when those k-sets are distinct)."""
        block = self.A[np.asarray(selected, dtype=np.int64)]
        top = -np.partition(-block, self.k - 1, axis=0)[: self.k]
        z_r = 0.5 * float(self.penalty[np.ix_(selected, selected)].sum())
        return self.alpha * float(top.sum()) + float(self.b[selected].sum()) - z_r

    def checks(self, selected: np.ndarray, weight: np.ndarray) -> dict[str, bool]:
        """Each constraint of docs/method.md §3, verified in its [F]/[F, C] form on the returned arrays."""
        F, C = self.A.shape
        selected = np.asarray(selected)
        weight = np.asarray(weight)
        shapes_ok = (
            selected.ndim == 1
            and weight.shape == (C, len(selected))
            and (selected.size == 0 or (selected.min() >= 0 and selected.max() < F))
        )
        if not shapes_ok:
            return dict.fromkeys(CHECK_NAMES, False)
        s = np.zeros(F)
        np.add.at(s, selected, 1.0)
        W = full_weight(selected, weight, F)
        binary = bool(np.isin(s, (0, 1)).all() and np.isin(W, (0, 1)).all())
        return {
            "sum_s_equals_n": bool(binary and s.sum() == self.n),
            "w_le_s": bool(binary and (W <= s[:, None]).all()),
            "k_per_class": bool((W.sum(axis=0) == self.k).all()),
            "class_sets_distinct": bool(len({tuple(np.flatnonzero(col)) for col in W.T}) == C),
        }


def full_weight(selected: np.ndarray, weight: np.ndarray, num_features: int) -> np.ndarray:
    """The [F, C] form W_fc of a [C, n] weight over the selected features."""
    selected = np.asarray(selected, dtype=np.int64)
    W = np.zeros((num_features, np.asarray(weight).shape[0]))
    np.add.at(W, selected, np.asarray(weight, dtype=np.float64).T)
    return W
