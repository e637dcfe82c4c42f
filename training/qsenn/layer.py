"""Q-SENN's interpretable layer (docs/method.md §5, step 2): a sparse elastic-net fit on the selected,
normalised features, reduced to the k·C largest weights and quantised.

Weights become {−m, 0, +m}, m the mean magnitude of the kept weights; the bias becomes a ramp
from +max|b| (the class with the fewest net positive weights) to −max|b| (the most), so that
classes that add up more features do not win by count alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .glm import fit_elastic_net, lambda_max, one_hot


@dataclass(frozen=True)
class QuantisedLayer:
    weight: np.ndarray  #: [C, n] in {−m, 0, +m}
    bias: np.ndarray  #: [C]
    magnitude: float  #: m
    dense_accuracy: float  #: training accuracy of the unquantised fit


def fit_sparse_layer(
    Z: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    alpha: float = 0.99,
    steps: int = 30,
    epsilon: float = 1e-3,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The elastic-net path from λ_max down to ε·λ_max (warm-started); returns its last point."""
    Y = one_hot(labels, num_classes, Z.dtype)
    top = lambda_max(Z, Y, alpha, group=False)
    W = torch.zeros(num_classes, Z.shape[1], dtype=Z.dtype)
    b = Y.mean(dim=0).clamp_min(1e-12).log()
    for lam in top * np.logspace(0, np.log10(epsilon), steps):
        fit = fit_elastic_net(Z, Y, float(lam), alpha, weight=W, bias=b, max_iter=max_iter)
        W, b = fit.weight, fit.bias
    accuracy = float(((Z @ W.T + b).argmax(dim=1) == labels).float().mean())
    return W, b, accuracy


def quantise(
    weight: np.ndarray, bias: np.ndarray, per_class: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Keep the per_class·C largest |weights| (ties broken by position), set them to ±m and
    ramp the bias by each class's count of positive minus negative weights."""
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    C = weight.shape[0]
    goal = min(per_class * C, int(np.count_nonzero(weight)))
    flat = np.abs(weight).ravel()
    keep = np.zeros(flat.shape, dtype=bool)
    keep[np.argsort(-flat, kind="stable")[:goal]] = True
    keep = keep.reshape(weight.shape)
    magnitude = float(np.abs(weight[keep]).mean()) if goal else 0.0
    quantised = np.where(keep, np.sign(weight) * magnitude, 0.0)
    net = (quantised > 0).sum(axis=1) - (quantised < 0).sum(axis=1)
    excess = net - net.min()
    top = float(np.abs(bias).max())
    if excess.max() == 0 or top == 0:
        ramp = np.zeros(C)  # all classes alike: a constant bias changes no decision
    else:
        ramp = top - excess * (2 * top / excess.max())
    return quantised.astype(np.float32), ramp.astype(np.float32), magnitude


def quantised_layer(
    Z: torch.Tensor, labels: torch.Tensor, num_classes: int, per_class: int, **kwargs
) -> QuantisedLayer:
    W, b, accuracy = fit_sparse_layer(Z, labels, num_classes, **kwargs)
    weight, bias, magnitude = quantise(W.numpy(), b.numpy(), per_class)
    return QuantisedLayer(weight, bias, magnitude, accuracy)
