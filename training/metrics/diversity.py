"""SID@k, the diversity of where a prediction's features look (docs/method.md §6), computed in batches.

The maps of a whole test set do not fit in memory for real models (ResNet-50 CUB: 5,794 images
× 50 maps × 28 × 28), so the metric is an accumulator: `update()` per batch, `compute()` at the end.

Per image, with c its predicted class and S the k features with the largest |W[c, ·]|:
    m_f  = M_f / max(mean_positions |M_f|, 1e-5)          (scale-free: only the shape counts)
    p_f  = softmax over the h·w positions of m_f
    SID  = (1/k) · Σ_positions max_{f ∈ S} p_f(position)
Each p_f sums to 1, so 1/k ≤ SID ≤ 1: 1/k when all k maps are identical, → 1 when each peaks
sharply at a different place. The metric is the mean over the images that are counted.

Conventions (and where they differ from the authors' evaluation/diversity.py):
- Images whose predicted class has fewer than k nonzero weights are skipped (counted in
  `skipped`): SID@k is undefined for them. The authors do the same (`max_ks >= k`). For QPM
  every class has exactly k, so nothing is skipped.
- Features are ranked by |weight| (docs/method.md); the authors rank by the signed weight, which for
  Q-SENN could pick a zero-weight feature over a negative one. Ties in |weight| go to the
  lower feature index.
- Every image passed in is counted; the authors' loop drops the test set's last partial batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._inputs import float_array, map_batch, positive_int, predictions, same_length

#: Lower bound of a map's mean |value| before dividing by it (a map of zeros stays zeros).
MAP_SCALE_EPS = 1e-5


class SIDAccumulator:
    """Streaming SID@k over batches of feature maps and predictions."""

    def __init__(self, weight: Any, k: int = 5):
        w = np.abs(float_array(weight, "weight", 2))
        self.k = positive_int(k, "k")
        self.num_classes, self.num_features = w.shape
        if self.k > self.num_features:
            raise ValueError(f"k={self.k} exceeds the {self.num_features} features of weight")
        #: [C, k] the k features of each class with the largest |weight|, ties → lower index
        self._top = np.argsort(-w, axis=1, kind="stable")[:, : self.k]
        #: [C] whether the class has at least k nonzero weights (otherwise SID@k is undefined)
        self._eligible = np.count_nonzero(w, axis=1) >= self.k
        self._total = 0.0
        self.count = 0  #: images that entered the mean
        self.skipped = 0  #: images whose predicted class has fewer than k nonzero weights

    def update(self, feature_maps: Any, predicted: Any) -> None:
        """Add a batch: feature_maps [B, F, h, w]; predicted class indices [B] or logits [B, C]."""
        maps = map_batch(feature_maps, self.num_features, "weight")
        pred = predictions(predicted, "predicted", self.num_classes)
        same_length(("feature_maps", maps.shape[0]), ("predicted", len(pred)))
        keep = self._eligible[pred]
        self.skipped += int(np.count_nonzero(~keep))
        if not keep.any():
            return
        rows = np.flatnonzero(keep)
        # only the k maps each image's class uses are read, converted and checked for NaN
        chosen = float_array(maps[rows[:, None], self._top[pred[rows]]], "feature_maps", 4)
        self._total += float(per_image_sid(chosen).sum())
        self.count += len(rows)

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError(
                f"SID@{self.k} is undefined: no image was counted ({self.skipped} skipped because "
                f"their predicted class has fewer than {self.k} nonzero weights)"
            )
        return self._total / self.count


def per_image_sid(chosen_maps: np.ndarray) -> np.ndarray:
    """SID of each image from its k chosen maps [B, k, h, w] → [B]."""
    flat = chosen_maps.reshape(chosen_maps.shape[0], chosen_maps.shape[1], -1)
    scale = np.maximum(np.abs(flat).mean(axis=2, keepdims=True), MAP_SCALE_EPS)
    logits = flat / scale
    logits -= logits.max(axis=2, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=2, keepdims=True)
    return probs.max(axis=1).sum(axis=1) / chosen_maps.shape[1]
