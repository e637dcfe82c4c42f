"""Structural Grounding (docs/method.md §6): do classes that truly look alike share features?

For datasets with a class attribute table (CUB: 312 continuous attribute values per class).
Model similarity of two classes = cosine similarity of their weight rows; ground truth =
cosine similarity of their attribute vectors. Over the `top` most similar ground-truth pairs:
Σ model similarity / Σ ground-truth similarity.

Difference from the authors' evaluation/Metrics/StructuralGrounding.py: they rank the entries
of the full symmetric C × C matrix, so their "50 pairs" are 25 unordered pairs, each counted
twice. We rank unordered pairs (c < d), as docs/method.md says; `top=25` reproduces their number.
Ties in ground-truth similarity go to the pair that comes first in row-major order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import float_array, positive_int
from .similarity import cosine_similarity_rows


def class_similarity_from_attributes(class_attributes: Any) -> np.ndarray:
    """Ground-truth class similarity [C, C] from a class attribute table [C, A] (cosine)."""
    return cosine_similarity_rows(float_array(class_attributes, "class_attributes", 2))


def structural_grounding(weight: Any, class_similarity: Any, top: int = 50) -> float:
    """Σ model similarity / Σ ground-truth similarity over the `top` most similar true pairs.

    weight [C, F]: the class-feature layer; class_similarity [C, C]: symmetric ground truth
    (e.g. `class_similarity_from_attributes`). Nonnegative weights (QPM) give values ≥ 0; 1
    means the model's similarities match the ground truth's on those pairs on average; the
    value can exceed 1 where the model ties classes closer than the attributes do.
    """
    w = float_array(weight, "weight", 2)
    truth = float_array(class_similarity, "class_similarity", 2)
    top = positive_int(top, "top")
    num_classes = w.shape[0]
    if truth.shape != (num_classes, num_classes):
        raise ValueError(
            f"class_similarity must be [{num_classes}, {num_classes}] for the {num_classes} "
            f"classes of weight, got shape {truth.shape}"
        )
    if not np.allclose(truth, truth.T, atol=1e-6):
        raise ValueError("class_similarity must be symmetric")
    rows, cols = np.triu_indices(num_classes, k=1)
    if top > len(rows):
        raise ValueError(f"top={top} exceeds the {len(rows)} pairs of {num_classes} classes")
    truth_pairs = truth[rows, cols]
    chosen = np.argsort(-truth_pairs, kind="stable")[:top]
    truth_sum = truth_pairs[chosen].sum()
    if truth_sum <= 0:
        raise ValueError(
            f"class_similarity's {top} most similar pairs sum to {truth_sum:g}; the ratio needs a positive sum"
        )
    model_pairs = cosine_similarity_rows(w)[rows, cols]
    return float(model_pairs[chosen].sum() / truth_sum)
