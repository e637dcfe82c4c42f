"""The semidefinite bound with redundancy (docs/method.md §7.4b), certified by a convex
reformulation of the objective.

With class prices ν (§7.4) every feature earns e_f(ν) = b_f + Σ_c max(0, αA_fc − ν_c) and a
selection's value is at most k Σν + Σ_{f∈S} e_f − Z_R(S). The redundancy is bounded on a *core*
of the best-earning features and dropped outside it (Z_R ≥ its part inside the core):

1. **Doubly nonnegative relaxation** of the core (SCS): lift s to Y = [1 sᵀ; s X] ⪰ 0 with
   diag X = s, X·1 = n s, X ≥ 0 and maximise eᵀs − ½⟨R̃, X⟩. It only *proposes* multipliers.
2. **Convex reformulation from its duals**: the duals give u [K] and N ≥ 0 [K, K] with
   M = R̃ − N − diag(u) positive semidefinite on the directions Σ d = 0 (checked with an
   eigenvalue decomposition; a shortfall is repaired by lowering u, which keeps it valid). For
   every 0/1 selection sᵀR̃s ≥ sᵀ(R̃ − N)s = sᵀMs + uᵀs, so with j selected features outside the core

       value(S) ≤ kΣν + top-j(e outside) + max { (e − u/2)ᵀs − ½ sᵀMs : 0 ≤ s ≤ 1, Σ s = n − j },

   a concave maximisation. Its maximum is bounded by q(s̄) + (the n − j largest entries of
   ∇q(s̄)) − ∇q(s̄)ᵀs̄ at any feasible s̄ (concavity), which accelerated projected gradient
   makes tight. The bound is the largest of these over j: proven for every (ν, u, N), whatever
   SCS's accuracy, because only the reformulation's validity (the eigenvalue check) and exact
   arithmetic enter it.
3. **Prices**: subgradient steps on ν with the reformulation fixed (a Polyak step towards the
   incumbent), each step a few of those concave problems; then, while time is left, SCS again
   at the prices reached (warm-started) and more steps.

Within `solve_assignment`'s budget, one core: proven gaps of 0.56-0.89 % on the 512×200
benchmark instances in 120 s and 0.94-1.14 % on the 2048×200 ones in 600 s (the group Lagrangian
of §7.4a alone: 3.9-6.3 % and 9.9-10.3 %).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.solver.problem import AssignmentProblem
from training.solver.relaxation import feature_earnings

logger = logging.getLogger(__name__)

#: SCS's time for a core of 512 features on one core of the project's machines (measured:
#: 29-40 s; 1024 features: 228 s). Its cost grows with the cube of the core, which is sized
#: from the time SCS is given (`core_size_for`)
SCS_SECONDS_512 = 35.0
#: the part of the bound's time SCS gets; the price steps and the certificate get the rest
SCS_SHARE = 0.7
#: the most SCS solves: the first, then each warm-started at the prices the steps reached
MAX_ROUNDS = 4
#: another round only while this part of the bound's time is left
ROUND_TIME_LEFT = 0.25
#: the part of the time left that a warm-started round's SCS gets (the first gets `SCS_SHARE`)
WARM_SCS_SHARE = 0.6
#: SCS's tolerance: the bound does not depend on it (step 2), only how tight it is
SCS_TOLERANCE = 1e-4
_QP_ITERATIONS = 150


@dataclass(frozen=True)
class Reformulation:
    """M [K, K] (positive semidefinite on Σ d = 0) and u [K] of the module docstring, on `core`."""

    core: np.ndarray  #: feature indices, sorted
    matrix: np.ndarray  #: M
    diagonal: np.ndarray  #: u
    lipschitz: float  #: M's largest eigenvalue on Σ d = 0 (the gradient step's constant)
    repair: float  #: how far u was lowered to make M semidefinite (0: the duals were exact)


@dataclass(frozen=True)
class SemidefiniteBound:
    bound: float  #: proven upper bound on the optimum
    core_size: int
    outside: int  #: selected features outside the core at the bound's maximiser
    scs_status: str
    repair: float
    rounds: int  #: SCS solves (each later one warm-started at the prices the last one reached)
    price_steps: int
    sdp_s: float
    wall_s: float

    def to_details(self) -> dict:
        return {
            "semidefinite_bound": self.bound,
            "semidefinite_core": self.core_size,
            "semidefinite_outside": self.outside,
            "semidefinite_scs_status": self.scs_status,
            "semidefinite_repair": self.repair,
            "semidefinite_rounds": self.rounds,
            "semidefinite_price_steps": self.price_steps,
            "semidefinite_sdp_s": round(self.sdp_s, 3),
            "semidefinite_s": round(self.wall_s, 3),
        }


def core_size_for(seconds: float) -> int:
    """The largest core (a multiple of 64, at least 64) SCS should solve in `seconds`."""
    size = 512.0 * (max(seconds, 0.0) / SCS_SECONDS_512) ** (1.0 / 3.0)
    return max(64, int(size) // 64 * 64)


def _svec_index(i: np.ndarray, j: np.ndarray, size: int) -> np.ndarray:
    """Position of entry (i, j), i ≥ j, in SCS's packed lower triangle (column by column)."""
    return j * size - j * (j - 1) // 2 + (i - j)


@dataclass(frozen=True)
class DualSolution:
    """What step 1 proposes: u [K] and N [K, K] ≥ 0, with SCS's status and solution."""

    diagonal: np.ndarray
    nonneg: np.ndarray
    status: str
    solution: tuple[np.ndarray, np.ndarray, np.ndarray]  #: SCS's (x, y, s), for a warm start


def doubly_nonnegative_duals(
    earn: np.ndarray,
    penalty: np.ndarray,
    n: int,
    *,
    time_limit: float,
    tolerance: float,
    warm_start: DualSolution | None = None,
) -> DualSolution:
    """Solve step 1 with SCS (from `warm_start`'s solution, for the same core, if given).

    Variables: Y's packed lower triangle (Y's row 0 is s, the rest X; off-diagonal entries are
    scaled by √2 in SCS's format). Rows: Y_00 = 1, X_ff = s_f, Σ_g X_fg = n s_f, Σ s = n (zero
    cone); X_fg ≥ 0 for f < g (nonnegative cone); Y ⪰ 0 (semidefinite cone).
    """
    import scs

    K = len(earn)
    D = K + 1
    r2 = math.sqrt(2.0)
    feats = np.arange(K)
    pos_s = _svec_index(feats + 1, np.zeros(K, dtype=np.int64), D)  # Y[f+1, 0]
    pos_diag = _svec_index(feats + 1, feats + 1, D)
    lo, hi = np.tril_indices(K, -1)  # feature pairs lo > hi (Y's lower triangle)
    pos_pair = _svec_index(lo + 1, hi + 1, D)  # X[lo, hi], lo > hi
    num_x = D * (D + 1) // 2
    rows, cols, vals = [], [], []

    def add(r, c, v):
        rows.append(np.asarray(r).ravel())
        cols.append(np.asarray(c).ravel())
        vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(r)).ravel())

    add([0], [0], 1.0)  # Y_00 = 1
    diag_rows = 1 + feats  # X_ff − s_f = 0
    add(diag_rows, pos_diag, 1.0)
    add(diag_rows, pos_s, -1.0 / r2)
    card_rows = 1 + K + feats  # Σ_g X_fg − n s_f = 0
    add(card_rows, pos_diag, 1.0)
    add(card_rows, pos_s, -n / r2)
    add(1 + K + lo, pos_pair, 1.0 / r2)
    add(1 + K + hi, pos_pair, 1.0 / r2)
    sum_row = 1 + 2 * K
    add(np.full(K, sum_row), pos_s, 1.0 / r2)
    num_zero = 2 + 2 * K
    pair_rows = num_zero + np.arange(len(lo))  # −X_fg + slack = 0, slack ≥ 0
    add(pair_rows, pos_pair, -1.0 / r2)
    psd_rows = num_zero + len(lo) + np.arange(num_x)  # −Y + slack = 0, slack ⪰ 0
    add(psd_rows, np.arange(num_x), -1.0)
    num_rows = num_zero + len(lo) + num_x
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(num_rows, num_x),
    )
    b = np.zeros(num_rows)
    b[0], b[sum_row] = 1.0, float(n)
    c = np.zeros(num_x)  # minimise −(eᵀs − Σ_{f<g} R̃_fg X_fg)
    c[pos_s] = -earn / r2
    c[pos_pair] = penalty[lo, hi] / r2
    solver = scs.SCS(
        {"A": A, "b": b, "c": c},
        {"z": num_zero, "l": len(lo), "s": [D]},
        eps_abs=tolerance,
        eps_rel=tolerance,
        time_limit_secs=max(time_limit, 1e-3),
        verbose=False,
    )
    if warm_start is not None:
        sol = solver.solve(True, *warm_start.solution)
    else:
        sol = solver.solve(False)
    y = np.asarray(sol["y"])
    # The dual's X block is ½(R̃ − N + φ1ᵀ + 1φᵀ) + diag(y_diag) ⪰ 0: M = R̃ − N + 2 diag(y_diag)
    eta = np.zeros((K, K))
    eta[lo, hi] = np.maximum(y[pair_rows], 0.0)
    eta = eta + eta.T
    return DualSolution(
        -2.0 * y[diag_rows],
        eta,
        str(sol["info"]["status"]),
        (np.asarray(sol["x"]), y, np.asarray(sol["s"])),
    )


def reformulation(
    penalty: np.ndarray, core: np.ndarray, diagonal: np.ndarray, nonneg: np.ndarray
) -> Reformulation:
    """Step 2: M = R̃ − N − diag(u) on the core, made semidefinite on Σ d = 0 by lowering u."""
    N = np.maximum(0.5 * (nonneg + nonneg.T), 0.0)
    np.fill_diagonal(N, 0.0)
    u = np.asarray(diagonal, dtype=np.float64).copy()
    M = penalty[np.ix_(core, core)] - N - np.diag(u)
    K = len(core)
    # eigenvalues of M on the directions Σ d = 0: project, and move the all-ones direction
    # (eigenvalue 0 after projecting) above everything else
    row = M.mean(axis=1)
    projected = M - row[:, None] - row[None, :] + row.mean()
    lift = float(np.abs(M).sum()) + 1.0
    eig = np.linalg.eigvalsh(projected + lift / K)
    smallest = float(eig[0])
    margin = 1e-9 * max(1.0, float(np.abs(eig).max()))
    repair = 0.0
    if smallest < margin:
        repair = margin - smallest
        u -= repair
        M[np.diag_indices(K)] += repair
    # the gradient step's constant: M's largest eigenvalue on Σ d = 0 (the lifted direction is
    # the top one of `eig`), after the repair
    lipschitz = (float(eig[-2]) if K > 1 else 0.0) + repair + 1e-9
    return Reformulation(np.asarray(core), M, u, lipschitz, repair)


def project_capped_simplex(y: np.ndarray, total: int) -> np.ndarray:
    """The point of {0 ≤ s ≤ 1, Σ s = total} nearest to y: clip(y − θ, 0, 1) with θ where
    g(θ) = Σ clip(y − θ, 0, 1) falls to `total`. g is piecewise linear, its slope minus the
    number of y_i in (θ, θ + 1); it is walked in closed form over the sorted breakpoints."""
    K = len(y)
    if total <= 0 or total >= K:
        return np.full(K, 1.0 if total >= K else 0.0)
    points = np.concatenate([y - 1.0, y])
    order = np.argsort(points, kind="stable")
    points = points[order]
    active = np.cumsum(np.where(order < K, 1.0, -1.0))  # slope magnitude after each breakpoint
    g = K - np.concatenate([[0.0], np.cumsum(active[:-1] * np.diff(points))])  # g at each
    m = min(int(np.searchsorted(-g, -float(total), side="left")), 2 * K - 1)  # g[m] ≤ total
    if m == 0:
        theta = points[0]
    elif active[m - 1] <= 0:
        theta = points[m]
    else:
        theta = points[m - 1] + (g[m - 1] - total) / active[m - 1]
    return np.clip(y - theta, 0.0, 1.0)


def concave_bound(
    linear: np.ndarray,
    form: Reformulation,
    total: int,
    start: np.ndarray,
    iterations: int = _QP_ITERATIONS,
) -> tuple[float, np.ndarray]:
    """(a proven upper bound on max linearᵀs − ½sᵀMs over 0 ≤ s ≤ 1, Σ s = total; the point s̄
    it was certified at), by accelerated projected gradient and the concavity certificate."""
    if total == 0:
        return 0.0, np.zeros_like(linear)
    M = form.matrix
    s = project_capped_simplex(start, total)
    z, t = s.copy(), 1.0

    def certificate(s: np.ndarray) -> tuple[float, float]:
        grad = linear - M @ s
        value = float(linear @ s - 0.5 * s @ (M @ s))
        best_direction = float(-np.partition(-grad, total - 1)[:total].sum())
        return value + best_direction - float(grad @ s), value

    for it in range(1, iterations + 1):
        step = project_capped_simplex(z + (linear - M @ z) / form.lipschitz, total)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = step + (t - 1.0) / t_next * (step - s)
        s, t = step, t_next
        if it % 25 == 0:  # stop once the certificate is as tight as it matters
            upper, value = certificate(s)
            if upper - value <= 1e-7 * max(1.0, abs(upper)):
                return upper, s
    return certificate(s)[0], s


class CoreBound:
    """U(ν) of step 2 for one reformulation: the maximum over j of the module docstring's bound."""

    def __init__(self, problem: AssignmentProblem, form: Reformulation):
        self.problem = problem
        self.form = form
        inside = np.zeros(problem.num_features, dtype=bool)
        inside[form.core] = True
        self.outside = np.flatnonzero(~inside)
        self.scaled = problem.alpha * problem.A
        n = problem.n
        self.counts = range(max(0, n - len(form.core)), min(n, len(self.outside)) + 1)
        self.start = np.full(len(form.core), n / len(form.core))

    def evaluate(self, prices: np.ndarray, counts=None) -> tuple[float, int, np.ndarray]:
        """(U at the prices over the given numbers j of outside features, the best j, the point
        [F] that attains it: fractional on the core, the j best outside features at 1)."""
        problem, form = self.problem, self.form
        earn = feature_earnings(problem, prices)
        linear = earn[form.core] - 0.5 * form.diagonal
        outside_order = self.outside[np.argsort(-earn[self.outside], kind="stable")]
        prefix = np.r_[0.0, np.cumsum(earn[outside_order])]
        best = (-math.inf, 0, self.start)
        for j in counts if counts is not None else self.counts:
            upper, s = concave_bound(linear, form, problem.n - j, self.start)
            value = upper + float(prefix[j])
            if value > best[0]:
                best = (value, j, s)
        value, j, s = best
        self.start = s if j < problem.n else self.start
        point = np.zeros(problem.num_features)
        point[form.core] = s
        point[outside_order[:j]] = 1.0
        return problem.k * float(prices.sum()) + value, j, point

    def local_counts(self, j: int) -> list[int]:
        return [c for c in range(j - 2, j + 3) if c in self.counts]


def semidefinite_bound(
    problem: AssignmentProblem,
    *,
    incumbent: float,
    prices: np.ndarray,
    time_limit: float,
    core_size: int | None = None,
    tolerance: float = SCS_TOLERANCE,
    max_price_steps: int = 5000,
) -> SemidefiniteBound | None:
    """Steps 1-3 within about `time_limit` seconds: SCS gets `SCS_SHARE` of it, the price steps
    the rest (at most `max_price_steps` in all), then, while `ROUND_TIME_LEFT` of the time is
    left and the last round helped, SCS again at the prices reached (warm-started), up to
    `MAX_ROUNDS`.
    The core is `core_size` features, by default as many as SCS can take in its time. None when
    there is no redundancy to bound or SCS returned no usable duals."""
    begin = time.monotonic()
    n, F = problem.n, problem.num_features
    if not np.any(problem.penalty) or n >= F:
        return None
    nu = np.asarray(prices, dtype=np.float64).copy()
    earn = feature_earnings(problem, nu)
    K = min(F, max(core_size or core_size_for(SCS_SHARE * time_limit), n))
    core = np.sort(np.argsort(-earn, kind="stable")[:K])
    penalty = problem.penalty[np.ix_(core, core)]
    best = None  # (bound, j, form, SCS's status)
    dual, rounds, steps, sdp_s = None, 0, 0, 0.0
    # each round: SCS at the current prices, then price steps with its reformulation
    improved = True
    while rounds == 0 or (
        improved
        and rounds < MAX_ROUNDS
        and time_limit - (time.monotonic() - begin) > ROUND_TIME_LEFT * time_limit
    ):
        left = time_limit - (time.monotonic() - begin)
        started = time.monotonic()
        dual = doubly_nonnegative_duals(
            feature_earnings(problem, nu)[core],
            penalty,
            n,
            time_limit=(SCS_SHARE if rounds == 0 else WARM_SCS_SHARE) * left,
            tolerance=tolerance,
            warm_start=dual,
        )
        sdp_s += time.monotonic() - started
        rounds += 1
        if not (np.all(np.isfinite(dual.diagonal)) and np.all(np.isfinite(dual.nonneg))):
            logger.info("assignment: SCS returned no usable duals (%s)", dual.status)
            break
        form = reformulation(problem.penalty, core, dual.diagonal, dual.nonneg)
        core_bound = CoreBound(problem, form)
        nu, taken = _price_steps(
            core_bound, nu, incumbent, begin + time_limit, max_price_steps - steps
        )
        steps += taken
        # the bound: every j, at the round's best prices (exact evaluation, as every step's)
        value, j, _ = core_bound.evaluate(nu)
        improved = best is None or value < best[0] - 1e-6 * max(1.0, abs(value))
        if best is None or value < best[0]:
            best = (value, j, form, dual.status)
        if steps >= max_price_steps:
            break
    if best is None:
        return None
    value, j, form, status = best
    return SemidefiniteBound(
        bound=value,
        core_size=K,
        outside=j,
        scs_status=status,
        repair=form.repair,
        rounds=rounds,
        price_steps=steps,
        sdp_s=sdp_s,
        wall_s=time.monotonic() - begin,
    )


def _price_steps(
    core_bound: CoreBound, prices: np.ndarray, incumbent: float, deadline: float, max_steps: int
) -> tuple[np.ndarray, int]:
    """Subgradient steps on ν (Polyak towards the incumbent, the step halved after 15 without
    progress); returns the best prices seen and the number of steps."""
    problem = core_bound.problem
    nu = prices.copy()
    best, best_prices = math.inf, nu
    factor, since, steps, j = 1.0, 0, 0, None
    while steps < max_steps and time.monotonic() < deadline:
        counts = None if j is None or steps % 25 == 0 else core_bound.local_counts(j)
        value, j, point = core_bound.evaluate(nu, counts)
        steps += 1
        if value < best - 1e-12:
            best, best_prices, since = value, nu.copy(), 0
        else:
            since += 1
            if since > 15:
                factor, since = factor / 2.0, 0
                if factor < 1e-4:
                    break
        grad = problem.k - ((core_bound.scaled > nu[None, :]) * point[:, None]).sum(axis=0)
        norm2 = float(grad @ grad)
        if norm2 == 0.0:
            break
        nu = nu - factor * max(value - incumbent, 1e-9 * max(1.0, abs(value))) / norm2 * grad
    return best_prices, steps
