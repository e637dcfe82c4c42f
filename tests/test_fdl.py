"""The feature diversity loss equals docs/method.md §1's formula computed literally, loop by loop."""

from __future__ import annotations

import math

import pytest
import torch

from training.nn.fdl import feature_diversity_loss


def literal_fdl(
    maps: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor, beta: float
) -> float:
    B, F, h, w = maps.shape
    total = 0.0
    for b in range(B):
        c = int(logits[b].argmax())
        row = [abs(float(weight[c, f])) for f in range(F)]
        norm = math.sqrt(sum(v * v for v in row)) + 1e-5
        row = [v / norm for v in row]
        means = [float(maps[b, f].mean()) for f in range(F)]
        top = max(max(means), 1e-6)
        soft = []
        for f in range(F):
            values = [float(maps[b, f, i, j]) for i in range(h) for j in range(w)]
            m = max(values)
            exps = [math.exp(v - m) for v in values]
            z = sum(exps)
            soft.append([e / z * means[f] / top for e in exps])
        for p in range(h * w):
            total += max(row[f] * soft[f][p] for f in range(F))
    return -beta * total / B


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_formula(seed):
    g = torch.Generator().manual_seed(seed)
    maps = torch.relu(torch.randn(3, 4, 3, 5, generator=g))
    logits = torch.randn(3, 6, generator=g)
    weight = torch.randn(6, 4, generator=g)
    got = feature_diversity_loss(maps, logits, weight, beta=0.196)
    assert float(got) == pytest.approx(literal_fdl(maps, logits, weight, 0.196), rel=1e-5)


def test_diverse_maps_score_better_than_overlapping_ones():
    weight = torch.ones(1, 2)
    logits = torch.zeros(1, 1)
    apart = torch.zeros(1, 2, 4, 4)
    apart[0, 0, 0, 0] = apart[0, 1, 3, 3] = 10.0
    together = torch.zeros(1, 2, 4, 4)
    together[0, :, 0, 0] = 10.0
    assert feature_diversity_loss(apart, logits, weight, 1.0) < feature_diversity_loss(
        together, logits, weight, 1.0
    )


def test_gradient_reaches_maps_and_weights_and_beta_zero_is_free():
    maps = torch.rand(2, 3, 2, 2, requires_grad=True)
    weight = torch.randn(4, 3, requires_grad=True)
    loss = feature_diversity_loss(maps, torch.randn(2, 4), weight, 0.5)
    loss.backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    assert weight.grad is not None
    assert float(feature_diversity_loss(maps, torch.randn(2, 4), weight, 0.0)) == 0.0
