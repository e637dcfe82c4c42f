"""Q-SENN's feature selection: a group-sparse elastic net path on which features enter one at a
time (docs/method.md §5, step 1).

Along λ from λ_max down, the model is refitted on the features selected so far; then the
unselected feature whose gradient group norm most exceeds the threshold λ·α (the one that would
enter the group lasso first) is added, and the fit repeats at the same λ until no feature
violates it; then λ decreases. The selection is the entry order's first n features.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import FeatureSelectionError
from .glm import cross_entropy_grad, fit_elastic_net, lambda_max, one_hot

log = logging.getLogger("training")


def select_features(
    Z: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    n: int,
    *,
    alpha: float = 0.8,
    steps: int = 100,
    epsilon: float = 1e-3,
    max_iter: int = 500,
) -> list[int]:
    """Indices of n features of the normalised features Z [N, F], in the order they entered."""
    _N, F = Z.shape
    if not 1 <= n <= F:
        raise ValueError(f"n must be in 1..{F} (the number of features), got {n}")
    Y = one_hot(labels, num_classes, Z.dtype)
    top = lambda_max(Z, Y, alpha, group=True)
    # continue geometrically below epsilon·λ_max if fewer than n features have entered by then
    lams = top * np.logspace(0, np.log10(epsilon) * 2, 2 * steps)
    selected: list[int] = []
    W_sel = torch.zeros(num_classes, 0, dtype=Z.dtype)
    b = Y.mean(dim=0).clamp_min(1e-12).log()
    for lam in lams:
        while True:
            if selected:
                fit = fit_elastic_net(
                    Z[:, selected],
                    Y,
                    lam,
                    alpha,
                    group=True,
                    weight=W_sel,
                    bias=b,
                    max_iter=max_iter,
                )
                W_sel, b = fit.weight, fit.bias
            W = torch.zeros(num_classes, F, dtype=Z.dtype)
            W[:, selected] = W_sel
            _, grad, _ = cross_entropy_grad(Z, Y, W, b)
            norms = grad.norm(dim=0)
            norms[selected] = -1.0
            candidate = int(norms.argmax())
            if float(norms[candidate]) <= lam * alpha:
                break
            selected.append(candidate)
            W_sel = torch.cat([W_sel, torch.zeros(num_classes, 1, dtype=Z.dtype)], dim=1)
            log.info(
                "q-senn selection: feature %d enters at λ=%.4g (%d/%d)",
                candidate,
                lam,
                len(selected),
                n,
            )
            if len(selected) == n:
                return selected
    raise FeatureSelectionError(
        f"only {len(selected)} of {n} features entered the path down to λ={lams[-1]:.3g}; "
        "the remaining features carry no signal for the labels"
    )
