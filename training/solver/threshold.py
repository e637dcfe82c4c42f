"""The redundancy threshold τ of docs/method.md §3 and the penalised pairs it defines.

τ is the smallest threshold for which the compatibility graph G_τ ("f and g are joined when
R[f, g] < τ") still has a clique of n vertices: with it, the largest set of pairs is penalised
(P = {f < g : R[f, g] ≥ τ}) that still leaves one selection of n features without any penalty.

G_t only changes when t passes a value of R, so τ is one of R's distinct off-diagonal values
(or, when even the graph joined on all pairs below max R has no n-clique, the float just
above max R: nothing is penalised). The clique number grows with t, so we bisect on the
sorted values:

1. a greedy clique search brackets τ from above (the smallest value at which it finds an
   n-clique: a proof that τ is at most that value);
2. the exact search (`cliques.find_clique_exact`: core peeling, then colouring-bounded branch
   and bound) then walks down: at the value just below the bracket, "no n-clique" proves τ
   minimal; a clique found moves the bracket down and the walk goes on by bisection.

The exact search is NP-hard in general, so it has a budget. When it runs out, τ is the
smallest value with a clique found (a feasible τ; the objective is defined with it), the
result says `proven_minimal=False` and gives the largest value proven to have no n-clique.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from training.solver.cliques import find_clique_exact, greedy_clique


@dataclass(frozen=True)
class ThresholdResult:
    """τ, how sure we are that it is the smallest, and the clique that witnesses it."""

    tau: float
    proven_minimal: bool
    #: the largest candidate threshold proven to have no n-clique (None: none was proven)
    infeasible_below: float | None
    #: n features with no pair R ≥ τ (a redundancy-free selection)
    clique: np.ndarray = field(repr=False)
    num_penalised_pairs: int
    wall_s: float

    def to_dict(self) -> dict:
        return {
            "tau": float(self.tau),
            "proven_minimal": self.proven_minimal,
            "infeasible_below": None
            if self.infeasible_below is None
            else float(self.infeasible_below),
            "num_penalised_pairs": int(self.num_penalised_pairs),
            "wall_s": round(self.wall_s, 3),
        }


def upper_triangle(R: np.ndarray) -> np.ndarray:
    """The strict upper triangle of R with negatives set to 0 (docs/method.md §2's form of R)."""
    upper = np.triu(np.asarray(R, dtype=np.float64), k=1)
    upper[upper < 0] = 0.0
    return upper


def redundancy_threshold(
    R: np.ndarray, n: int, *, time_limit: float = 60.0, node_limit: int = 2_000_000, seed: int = 0
) -> ThresholdResult:
    """τ for selecting `n` features under redundancy R ([F, F], upper triangle or symmetric)."""
    start = time.monotonic()
    upper = upper_triangle(R)
    F = upper.shape[0]
    if not 1 <= n <= F:
        raise ValueError(f"n must be in 1..{F} (the number of features), got {n}")
    sym = upper + upper.T
    iu = np.triu_indices(F, k=1)
    values = np.unique(upper[iu])  # ascending; candidate thresholds
    # candidate i ∈ [0, len(values)]; the last one means "above every value": complete graph
    above_max = float(np.nextafter(values[-1], np.inf)) if len(values) else 0.0
    candidates = np.append(values, above_max)

    def graph(i: int) -> np.ndarray:
        adj = sym < candidates[i]
        np.fill_diagonal(adj, False)
        return adj

    if n <= 1:  # a single feature has no pairs: nothing needs to be penalised
        return ThresholdResult(
            tau=above_max,
            proven_minimal=True,
            infeasible_below=None,
            clique=np.arange(n),
            num_penalised_pairs=0,
            wall_s=time.monotonic() - start,
        )

    # 1. greedy bracket from above: hi is the smallest index where the heuristic found a clique
    hi, witness = len(candidates) - 1, np.arange(n)
    lo = 0  # G at values[0] = min R has no edges at all, so no 2-clique: infeasible
    probe_lo = lo
    while hi - probe_lo > 1:
        mid = (probe_lo + hi) // 2
        clique = greedy_clique(graph(mid), n, seed=seed)
        if clique is not None:
            hi, witness = mid, clique
        else:
            probe_lo = mid

    # 2. exact search: first just below the bracket (usually the proof), then bisection
    proven_lo = lo
    mid = hi - 1
    while hi - proven_lo > 1:
        remaining = time_limit - (time.monotonic() - start)
        if remaining <= 0:
            break
        search = find_clique_exact(graph(mid), n, node_limit=node_limit, time_limit=remaining)
        if search.found is None:
            break
        if search.found:
            hi, witness = mid, search.clique
        else:
            proven_lo = mid
        mid = (proven_lo + hi) // 2
    pair_values = upper[iu]
    return ThresholdResult(
        tau=float(candidates[hi]),
        proven_minimal=hi - proven_lo <= 1,
        infeasible_below=float(candidates[proven_lo]),
        clique=np.asarray(witness, dtype=np.int64),
        num_penalised_pairs=int((pair_values >= candidates[hi]).sum()),
        wall_s=time.monotonic() - start,
    )
