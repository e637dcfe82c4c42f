"""Accuracy and the sparsity of the class-feature layer (docs/method.md §6: Accuracy, NFfeatures, PerClass)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import float_array, int_array, predictions, same_length


def accuracy(logits_or_pred: Any, labels: Any) -> float:
    """Top-1 accuracy in [0, 1] (a fraction, not a percentage).

    `logits_or_pred`: logits [N, C] (argmax taken, ties → lowest class) or class indices [N].
    """
    pred = predictions(logits_or_pred, "logits_or_pred")
    y = int_array(labels, "labels", 0, None)
    same_length(("logits_or_pred", len(pred)), ("labels", len(y)))
    return float(np.mean(pred == y))


def nf_features(weight: Any) -> int:
    """NFfeatures: how many features (columns of weight [C, F]) any class uses (nonzero weight)."""
    w = float_array(weight, "weight", 2)
    return int(np.count_nonzero((w != 0).any(axis=0)))


def per_class(weight: Any) -> float:
    """PerClass: mean number of nonzero weights per class (row of weight [C, F]); k for QPM."""
    w = float_array(weight, "weight", 2)
    return float(np.count_nonzero(w) / w.shape[0])
