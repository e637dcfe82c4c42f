"""Cutting planes for the redundancy each selected feature pays (its "star"), without pair variables.

Write Z_R = ½ Σ_f u_f with u_f = s_f Σ_g ρ_fg s_g (ρ symmetric, ≥ 0, zero diagonal). Multiply
Σ s = n by s_f: a selected f has n − 1 selected partners, so at least Σ_g s_g − n (1 − s_f)
of them — counted with their s — are paid for. Pricing that count at π ≥ 0 (LP duality of
"pay the cheapest partners first") gives, for every π ≥ 0 and every subset G of features,

    u_f ≥ Σ_{g ∈ G} min(π, ρ_fg) s_g − π n (1 − s_f),

valid for every 0/1 selection (s_f = 1: the right side is at most Σ_{g∈S} ρ_fg; s_f = 0: it is
at most π(n − n) = 0). With G = S and π = max ρ it is exact at S. These are the projection of
the product linearisation strengthened by the cardinality (RLT) row onto (s, u): the LP of
2 million pair variables at F = 2048 becomes F variables and cuts found on demand.

The most violated cut of f at an LP point s* maximises the concave piecewise-linear
h(π) = Σ_g min(π, ρ_fg) s*_g − π n (1 − s*_f), at a breakpoint π = ρ_fg: the one where the
s*-mass of the partners more expensive than π first reaches n (1 − s*_f).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StarCut:
    """u_f ≥ Σ_g coef_g s_g + π·n·s_f − π·n."""

    feature: int
    partners: np.ndarray
    coefficients: np.ndarray
    price: float  #: π
    violation: float


def most_violated(
    rho: np.ndarray,
    s_value: np.ndarray,
    u_value: np.ndarray,
    n: int,
    *,
    min_violation: float = 1e-6,
    max_cuts: int | None = None,
) -> list[StarCut]:
    """The most violated star cut of every feature at (s*, u*), most violated first."""
    support = np.flatnonzero(s_value > 1e-9)
    if len(support) == 0:
        return []
    block = rho[:, support]  # [F, |support|]
    order = np.argsort(-block, axis=1, kind="stable")
    sorted_rho = np.take_along_axis(block, order, axis=1)
    mass = np.cumsum(s_value[support][order], axis=1)
    need = n * (1.0 - s_value)  # [F]
    # first position whose cumulative mass reaches the need; never reached: π = 0 (no cut)
    reach = mass >= need[:, None] - 1e-12
    price = np.where(reach.any(axis=1), sorted_rho[np.arange(len(rho)), reach.argmax(axis=1)], 0.0)
    price = np.maximum(price, 0.0)
    coef = np.minimum(block, price[:, None])
    rhs = coef @ s_value[support] - price * need
    violation = rhs - u_value
    chosen = np.flatnonzero(violation > min_violation * np.maximum(1.0, np.abs(rhs)))
    chosen = chosen[np.argsort(-violation[chosen], kind="stable")]
    if max_cuts is not None:
        chosen = chosen[:max_cuts]
    cuts = []
    for f in chosen:
        keep = coef[f] > 0
        cuts.append(
            StarCut(int(f), support[keep], coef[f, keep], float(price[f]), float(violation[f]))
        )
    return cuts


def exact_cut(rho: np.ndarray, feature: int, selected: np.ndarray) -> StarCut:
    """The cut that is tight at the 0/1 selection `selected` (which contains `feature`)."""
    partners = np.asarray([g for g in selected if g != feature], dtype=np.int64)
    coef = rho[feature, partners]
    keep = coef > 0
    price = float(coef.max()) if coef.size else 0.0
    return StarCut(int(feature), partners[keep], coef[keep], price, 0.0)
