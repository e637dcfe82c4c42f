"""Contrastiveness (docs/method.md §6): do features separate images into "present" and "absent"?

Per feature a 2-component 1-D Gaussian mixture is fitted to its training values (sklearn's EM);
the overlap coefficient of the two Gaussians (the shared area under both densities, ignoring
the mixing weights, as the authors do) is 0 for a perfectly bimodal feature and 1 when the two
components coincide. Contrastiveness = 1 − mean overlap, in [0, 1]; higher = more contrastive.

Speed and determinism: sklearn's default start runs a KMeans per feature; with OpenMP's
default thread count on a busy 2-core machine that makes each fit ~6x slower (measured: 78-140
ms vs 12-22 ms per feature of 6,000 values; with OMP_NUM_THREADS=1 both take the same time).
We start EM instead from the exact 1-D 2-means split, computed for all features at once from
sorted prefix sums. KMeans in 1-D almost always reaches that split too, so EM starts where the
authors' does; with no random start the result is deterministic without a seed.
EM stops at sklearn's default tolerance (1e-3 on the mean log-likelihood), as in the authors'
code: that alone makes a single feature's overlap uncertain by about ±0.01, whichever start.

The authors skip this metric for dense models (F > 1000). We compute it (30-85 s for 2,048
features × 6,000 images on this 2-core machine, depending on its load; see
`python -m training metrics-bench`); `contrastiveness(max_features=...)` offers a deterministic
subsample of the features instead, which the caller must then report as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ._inputs import float_array, positive_int

#: Added to each component's variance, sklearn's default: a point mass gets a tiny, finite width.
REG_COVAR = 1e-6
#: Sorted copies of this many floats are processed at once when computing the 2-means splits.
_CHUNK_FLOATS = 8_000_000


def contrastiveness(features: Any, max_features: int | None = None) -> float:
    """1 − mean GMM overlap over the features [N, F]; with `max_features`, over that many
    features evenly spaced over the columns (a documented approximation for dense models)."""
    x = float_array(features, "features", 2)
    if max_features is not None:
        max_features = positive_int(max_features, "max_features")
        if max_features < x.shape[1]:
            x = x[:, np.linspace(0, x.shape[1] - 1, max_features).round().astype(int)]
    return float(1.0 - gmm_overlaps(x).mean())


def gmm_overlaps(features: Any) -> np.ndarray:
    """Overlap coefficient [F] of the two components of each feature's 2-component GMM."""
    from sklearn.mixture import GaussianMixture

    x = float_array(features, "features", 2)
    if x.shape[0] < 2:
        raise ValueError(
            f"features needs at least 2 samples (rows) for a 2-component fit, got {x.shape[0]}"
        )
    starts = two_means_starts(x)
    overlaps = np.ones(x.shape[1])  # a constant feature: the two components coincide
    for f in np.flatnonzero(x.max(axis=0) > x.min(axis=0)):
        gmm = GaussianMixture(
            n_components=2,
            reg_covar=REG_COVAR,
            init_params="random_from_data",  # cheap; fully replaced by the *_init below
            weights_init=starts.weights[f],
            means_init=starts.means[f][:, None],
            precisions_init=(1.0 / starts.variances[f])[:, None, None],
            random_state=0,
        ).fit(x[:, f : f + 1])
        sigma = np.sqrt(gmm.covariances_.ravel())
        overlaps[f] = NormalDist(gmm.means_[0, 0], sigma[0]).overlap(
            NormalDist(gmm.means_[1, 0], sigma[1])
        )
    return overlaps


@dataclass(frozen=True)
class MixtureStart:
    """Per feature the weights, means and variances [F, 2] of the two 2-means clusters."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray


def two_means_starts(x: np.ndarray) -> MixtureStart:
    """The optimal split of each column of x [N, F] into a low and a high cluster.

    In 1-D the optimal 2-means clusters are contiguous in sorted order; the best split point
    maximises the between-cluster sum of squares, S_l² · N / (n_l · n_r) for centred values
    with S_l the sum of the lower n_l of them.
    """
    n, num_features = x.shape
    weights = np.empty((num_features, 2))
    means = np.empty((num_features, 2))
    variances = np.empty((num_features, 2))
    n_low = np.arange(1, n)[:, None].astype(np.float64)
    n_high = n - n_low
    chunk = max(1, _CHUNK_FLOATS // n)
    for lo in range(0, num_features, chunk):
        cols = slice(lo, lo + chunk)
        centre = x[:, cols].mean(axis=0)
        values = np.sort(x[:, cols], axis=0) - centre
        sum_low = np.cumsum(values, axis=0)[:-1]
        sq_low = np.cumsum(values**2, axis=0)[:-1]
        split = np.argmax(sum_low**2 * (n / (n_low * n_high)), axis=0)  # lower part: split+1 values
        idx = np.arange(values.shape[1])
        count = np.stack([n_low[split, 0], n_high[split, 0]], axis=1)
        total, sq_total = values.sum(axis=0), (values**2).sum(axis=0)
        sums = np.stack([sum_low[split, idx], total - sum_low[split, idx]], axis=1)
        squares = np.stack([sq_low[split, idx], sq_total - sq_low[split, idx]], axis=1)
        mean = sums / count
        weights[cols] = count / n
        means[cols] = mean + centre[:, None]
        variances[cols] = np.maximum(squares / count - mean**2, 0.0) + REG_COVAR
    return MixtureStart(weights, means, variances)
