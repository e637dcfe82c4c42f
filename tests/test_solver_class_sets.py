"""The best distinct class sets of a fixed selection (training.solver.class_sets) against a full
assignment problem over every k-subset, and the best-first subset enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from test_solver import brute_class_sets

from training.solver.class_sets import best_class_sets, top_subsets


@pytest.mark.parametrize("spread", [0.0, 0.05, 0.3])
def test_best_class_sets_equal_the_full_assignment_problem(spread):
    """300 random cases; a small spread makes the classes prefer the same features, so their
    individual best sets collide and the certificate loop has to decide."""
    rng = np.random.default_rng(int(spread * 100))
    repaired = 0
    for _ in range(100):
        n, k = int(rng.integers(4, 8)), int(rng.integers(2, 4))
        C = int(rng.integers(2, min(9, math.comb(n, k)) + 1))
        values = rng.normal(size=(n, 1)) + spread * rng.normal(size=(n, C))
        weight, was_repaired = best_class_sets(values, k)
        repaired += was_repaired
        assert (weight.sum(axis=1) == k).all()
        assert len({tuple(row) for row in weight}) == C
        assert float((weight.T * values).sum()) == pytest.approx(
            brute_class_sets(values, k), abs=1e-9
        )
    if spread < 0.1:
        assert repaired > 50  # the collisions were exercised


def test_top_subsets_are_the_best_in_order_and_stop_when_none_are_left():
    rng = np.random.default_rng(3)
    values = rng.normal(size=7)
    every = sorted(itertools.combinations(range(7), 3), key=lambda s: -values[list(s)].sum())
    listed = top_subsets(values, 3, 12)
    assert [values[list(s)].sum() for s in listed] == pytest.approx(
        [values[list(s)].sum() for s in every[:12]]
    )
    assert len(set(listed)) == 12
    assert len(top_subsets(values, 3, 100)) == math.comb(7, 3)
