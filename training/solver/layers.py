"""Redundancy counted per class: the part of Z_R the LP cannot dodge by splitting s.

The product linearisation of Z_R is weak because a fractional s spreads over many features
and no pair looks "both selected". But features that both serve class c well have similar
A rows, so the pairs among a class's top features are penalised: counting how many of them
are selected, X = Σ_{f ∈ top_t(c)} s_f, and paying θ · binom(X, 2) is something a spread-out
s cannot avoid. This module builds such layers so that their total never exceeds R̃ on any
pair, which keeps the model a relaxation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.solver.problem import AssignmentProblem


@dataclass(frozen=True)
class ClassLayers:
    """Z_R ≥ Σ_(c,t) θ_ct · binom(|S ∩ top_t(c)|, 2): redundancy counted per class prefix.

    Features that both serve class c well have similar A rows, so their pair is penalised;
    every pair's R̃ is split over the classes in proportion to the positive products of the
    pair's unit A rows in each class (a partition of R̃, valid for any R), and the part given
    to class c is covered by nested prefixes of c's ranking: θ_ct is what all pairs inside the
    top t still have in common. Counting selected features per prefix instead of products of
    s is what the LP cannot dodge by splitting s over many features.
    """

    classes: np.ndarray  #: [L] class of each layer
    depth: np.ndarray  #: [L] prefix length t
    theta: np.ndarray  #: [L] weight
    captured: np.ndarray  #: [F, F] symmetric part of R̃ the layers account for


def class_layers(problem: AssignmentProblem, depth: int, min_theta: float = 1e-6) -> ClassLayers:
    F, C = problem.A.shape
    depth = min(depth, F)
    captured = np.zeros((F, F))
    if depth < 2:
        return ClassLayers(np.zeros(0, int), np.zeros(0, int), np.zeros(0), captured)
    norms = np.linalg.norm(problem.A, axis=1, keepdims=True)
    unit = np.where(norms > 0, problem.A / np.maximum(norms, 1e-300), 0.0)
    pos, neg = np.maximum(unit, 0.0), np.minimum(unit, 0.0)
    order = np.argsort(-problem.A, axis=0, kind="stable")[:depth]  # [depth, C]
    classes, depths, thetas = [], [], []
    for c in range(C):
        top = order[:, c]
        positive_products = pos[top] @ pos[top].T + neg[top] @ neg[top].T
        share = np.maximum(np.outer(unit[top, c], unit[top, c]), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(positive_products > 0, share / positive_products, 0.0)
        given = problem.penalty[np.ix_(top, top)] * share  # part of each pair given to class c
        # m_t = smallest share among the pairs inside the top t (non-increasing in t)
        inner = np.minimum.accumulate(
            np.r_[np.inf, [given[t - 1, : t - 1].min() for t in range(2, depth + 1)]]
        )
        m = np.r_[inner[1:], 0.0]  # m[t-2] for t = 2..depth, then 0
        theta = m[:-1] - m[1:]
        pair_level = np.maximum.outer(
            np.arange(depth), np.arange(depth)
        )  # index of the pair's prefix
        captured[np.ix_(top, top)] += np.where(
            pair_level > 0, m[np.maximum(pair_level - 1, 0)], 0.0
        )
        for t in range(2, depth + 1):
            if theta[t - 2] > min_theta:
                classes.append(c)
                depths.append(t)
                thetas.append(theta[t - 2])
    np.fill_diagonal(captured, 0.0)
    safety = 1.0 - 1e-9  # rounding must never make the layers count more than R̃
    return ClassLayers(
        np.array(classes, int), np.array(depths, int), safety * np.array(thetas), safety * captured
    )


def pairs_binomial(count: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """max(0, max_j (j·X − j(j+1)/2)) over j in 1..lines: binom(X, 2) for integer X ≤ lines + 1."""
    j = np.arange(1, int(lines.max(initial=1)) + 1)
    values = j[None, :] * count[:, None] - j * (j + 1) / 2.0
    values = np.where(j[None, :] <= lines[:, None], values, -np.inf)
    return np.maximum(values.max(axis=1), 0.0)
