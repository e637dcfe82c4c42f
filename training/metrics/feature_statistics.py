"""Class-Independence and Correlation (docs/method.md §6): how the features behave over the training set.

Both take `features [N, F]` as the classification layer sees them: for QPM/Q-SENN the
normalised selected features (`ModelOutput.features`), for a dense model the pooled features,
computed on the training set with test-time transforms (as the authors do).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import float_array, int_array, positive_int, same_length
from .similarity import cosine_similarity_rows


def class_independence(features: Any, labels: Any, num_classes: int) -> float:
    """1 − mean over features of the largest share of a feature's mass that one class holds.

    Each feature is shifted to minimum 0; its mass is the sum over images, a class's share
    the part summed over that class's images. Range [0, 1 − 1/C]; higher = features are shared
    across classes. A constant feature has no mass; we give it the share of images each class
    has (the limit of a feature that is equal on every image), so for balanced classes it
    scores 1 − 1/C. The authors' code gives it share 0 (a perfect 1), which would reward dead
    features.
    """
    x = float_array(features, "features", 2)
    num_classes = positive_int(num_classes, "num_classes")
    y = int_array(labels, "labels", 0, num_classes)
    same_length(("features", x.shape[0]), ("labels", len(y)))

    shifted = x - x.min(axis=0)
    order = np.argsort(y, kind="stable")
    classes, starts = np.unique(y[order], return_index=True)
    class_mass = np.add.reduceat(shifted[order], starts, axis=0)  # [present classes, F]
    total = class_mass.sum(axis=0)
    constant = total <= 0
    shares = class_mass / np.where(constant, 1.0, total)
    class_frequency = np.bincount(y, minlength=num_classes)[classes] / len(y)
    shares[:, constant] = class_frequency[:, None]
    return float(1.0 - shares.max(axis=0).mean())


def correlation(features: Any) -> float:
    """Mean over features of the largest cosine similarity to any other feature, in [−1, 1].

    Cosine (not Pearson) over the training images, as the paper; lower = less redundant.
    The maximum runs over the other features only (docs/method.md). The authors zero the diagonal
    and then take the maximum over all entries, which clips each feature's value at 0 from
    below; this only differs when a feature is negatively correlated with all others.
    """
    x = float_array(features, "features", 2)
    if x.shape[1] < 2:
        raise ValueError(f"features needs at least 2 features (columns), got shape {x.shape}")
    similarity = cosine_similarity_rows(x.T)
    np.fill_diagonal(similarity, -np.inf)
    return float(similarity.max(axis=1).mean())
