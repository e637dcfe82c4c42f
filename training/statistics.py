"""The statistics the QPM assignment is solved on (docs/method.md §2): A, R, b, and the features' μ, σ.

All of them are accumulated in one streaming pass over the training set (test-time
transforms), because the feature maps of a real backbone do not fit in memory
(ResNet-50 at 224 px: 2048 × 28 × 28 floats per image).

- `A[f, c]`: Pearson correlation of feature f with the indicator 1[y = c], divided by max |A|.
- `R[f, g]`: cosine similarity of rows A[f] and A[g], divided by max |R|, strict upper triangle,
  negatives set to 0.
- `R_within[f, g]`: the Pearson correlation of x_f and x_g within classes (each image's class
  mean subtracted), post-processed as R: the option `assignment.redundancy: within_class`.
- `b[f]`: locality bias, preferring features that peak in one place and not on the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qpm_zoo.config import atomic_path

#: The scale every robustly rescaled vector ends at (the authors' choice: √10 · 0.1).
LOCALITY_SCALE = float(np.sqrt(10.0) * 0.1)


@dataclass(frozen=True)
class AssignmentStatistics:
    """What the solver needs (A, R, b) and what the QPM head needs (mean, std)."""

    A: np.ndarray  #: [F, C] normalised feature-class correlation
    R: np.ndarray  #: [F, F] normalised redundancy, strict upper triangle, >= 0
    b: np.ndarray  #: [F] locality bias
    mean: np.ndarray  #: [F] feature means over the training set
    std: np.ndarray  #: [F] feature standard deviations (population)
    num_samples: int
    #: [F, F] within-class correlation, post-processed as R; None in statistics written before it
    R_within: np.ndarray | None = None

    def redundancy(self, kind: str) -> np.ndarray:
        """The redundancy matrix `assignment.redundancy` names: "class_similarity" (the paper's
        R) or "within_class" (R_within)."""
        if kind == "class_similarity":
            return self.R
        if kind != "within_class":
            raise ValueError(f"unknown redundancy {kind!r}")
        if self.R_within is None:
            raise ValueError("these statistics predate the within-class redundancy")
        return self.R_within

    def save(self, path: str | Path) -> None:
        """Write an .npz atomically."""
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                A=self.A,
                R=self.R,
                b=self.b,
                mean=self.mean,
                std=self.std,
                num_samples=np.asarray(self.num_samples),
                **({} if self.R_within is None else {"R_within": self.R_within}),
            )

    @classmethod
    def load(cls, path: str | Path) -> AssignmentStatistics:
        with np.load(path) as data:
            return cls(
                A=data["A"],
                R=data["R"],
                b=data["b"],
                mean=data["mean"],
                std=data["std"],
                num_samples=int(data["num_samples"]),
                R_within=data["R_within"] if "R_within" in data.files else None,
            )


def normalised_correlation(
    sum_x: np.ndarray,
    sum_x2: np.ndarray,
    class_sums: np.ndarray,
    class_counts: np.ndarray,
    num_samples: int,
) -> np.ndarray:
    """A from sufficient statistics: Pearson corr(x_f, 1[y=c]) / max |corr|.

    Features that never vary (dead ReLU channels) correlate with nothing: their row is 0.
    """
    n = float(num_samples)
    mean_x = sum_x / n
    var_x = np.maximum(sum_x2 / n - mean_x**2, 0.0)
    p = class_counts / n  # E[1[y=c]]
    cov = class_sums.T / n - np.outer(mean_x, p)  # [F, C] E[x z] - E[x] E[z]
    denom = np.sqrt(var_x)[:, None] * np.sqrt(p * (1.0 - p))[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(denom > 1e-12, cov / denom, 0.0)
    top = np.abs(corr).max()
    return corr / top if top > 0 else corr


def redundancy(A: np.ndarray) -> np.ndarray:
    """R: cosine similarity of A's rows, / max |R|, strict upper triangle, negatives → 0."""
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    unit = A / np.maximum(norms, 1e-8)
    return _as_redundancy(unit @ unit.T)


def within_class_redundancy(
    cross: np.ndarray, class_sums: np.ndarray, class_counts: np.ndarray
) -> np.ndarray:
    """R_within from sufficient statistics: the correlation of the features after each image's
    class mean is subtracted, post-processed as R. Two channels that detect the same concept
    vary together inside a class (the object's size, contrast, visibility); two that detect
    different concepts of the same classes do not, though their rows of A are alike.

    `cross` is Σ x xᵀ and `class_sums` Σ x per class, both of shifted features (the shift
    cancels); features that do not vary within classes correlate with nothing."""
    counts = np.maximum(class_counts, 1.0)[:, None]
    scatter = cross - class_sums.T @ (class_sums / counts)  # Σ_c Σ_{i∈c} (x−μ_c)(x−μ_c)ᵀ
    var = np.maximum(np.diag(scatter), 0.0)
    scale = np.sqrt(var)
    live = scale > 1e-12 * max(1.0, float(scale.max(initial=0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(np.outer(live, live), scatter / np.outer(scale, scale), 0.0)
    return _as_redundancy(np.clip(corr, -1.0, 1.0))


def _as_redundancy(R: np.ndarray) -> np.ndarray:
    """/ max |R|, strict upper triangle, negatives → 0: what the solver reads."""
    top = np.abs(R).max()
    if top > 0:
        R = R / top
    R = np.triu(R, k=1)
    R[R < 0] = 0.0
    return R


def largest_cluster_range(values: np.ndarray) -> tuple[float, float]:
    """(low, high) of the most populated cluster of a 1-D mean-shift clustering."""
    from sklearn.cluster import MeanShift, estimate_bandwidth

    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    bandwidth = estimate_bandwidth(x, quantile=0.3, random_state=0) if len(x) > 1 else 0.0
    if not bandwidth > 0:  # all (or all but a few) values equal: one cluster holds everything
        return float(x.min()), float(x.max())
    labels = MeanShift(bandwidth=bandwidth).fit(x).labels_
    biggest = np.bincount(labels).argmax()
    members = x[labels == biggest, 0]
    return float(members.min()), float(members.max())


def robust_rescale(values: np.ndarray, scale: float = LOCALITY_SCALE) -> np.ndarray:
    """The authors' outlier-robust rescaling of a per-feature score.

    Values outside the largest mean-shift cluster's range [low, high] get that end's magnitude
    with their own sign; then the vector is centred and scaled to max |value| = `scale`.
    """
    v = np.asarray(values, dtype=np.float64).copy()
    if v.size == 0:
        return v
    low, high = largest_cluster_range(v)
    below, above = v < low, v > high
    v[below] = abs(low) * np.sign(v[below])
    v[above] = abs(high) * np.sign(v[above])
    v -= v.mean()
    top = np.abs(v).max()
    return v / top * scale if top > 0 else v


def locality_bias(loc: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """b from the raw locality and border scores: border-peaking features get the lowest score."""
    L = robust_rescale(loc)
    E = robust_rescale(edge)
    return robust_rescale(np.where(E >= 0, L, L.min()))


class StatisticsAccumulator:
    """Collects everything for A, R, b, μ and σ in one pass over batches.

    Call `update(features, labels, feature_maps)` per batch (pooled features [B, F] ≥ 0, labels
    [B], the maps [B, F, h, w] they were pooled from), then `finalize()`.
    """

    def __init__(self, num_features: int, num_classes: int):
        self.num_features = num_features
        self.num_classes = num_classes
        self.num_samples = 0
        self.sum_x = np.zeros(num_features)
        self.sum_x2 = np.zeros(num_features)
        self.class_sums = np.zeros((num_classes, num_features))
        self.class_counts = np.zeros(num_classes)
        self.cross = np.zeros((num_features, num_features))  # Σ (x−s)(x−s)ᵀ
        self.loc = np.zeros(num_features)
        self.edge = np.zeros(num_features)
        self._shift: np.ndarray | None = None  # first batch mean: keeps Σx² well conditioned

    def update(self, features, labels, feature_maps) -> None:
        x = torch.as_tensor(features).detach().to(torch.float64).cpu()
        y = torch.as_tensor(labels).detach().long().cpu()
        maps = torch.as_tensor(feature_maps).detach()
        B, F = x.shape
        if F != self.num_features or maps.shape[:2] != (B, F) or y.shape != (B,):
            raise ValueError(
                f"batch shapes disagree: features {tuple(x.shape)}, labels {tuple(y.shape)}, "
                f"maps {tuple(maps.shape)} (expected F={self.num_features})"
            )
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"labels must be in 0..{self.num_classes - 1}, got {int(y.min())}..{int(y.max())}"
            )
        xn = x.numpy()
        if self._shift is None:
            self._shift = xn.mean(axis=0)
        centred = xn - self._shift
        self.num_samples += B
        self.sum_x += centred.sum(axis=0)
        self.sum_x2 += (centred**2).sum(axis=0)
        self.cross += centred.T @ centred
        np.add.at(self.class_sums, y.numpy(), centred)
        self.class_counts += np.bincount(y.numpy(), minlength=self.num_classes)

        # ω[i, f] = x[i, f] / Σ_g x[i, g]: how much of image i's activation feature f carries
        total = x.sum(dim=1, keepdim=True)
        omega = torch.where(total > 0, x / total.clamp_min(1e-12), torch.zeros_like(x))
        flat = maps.flatten(2).float()
        peak = torch.softmax(flat, dim=2).amax(dim=2).to(torch.float64).cpu()
        h, w = maps.shape[2], maps.shape[3]
        where = flat.argmax(dim=2).cpu()
        row, col = where // w, where % w
        on_border = ((row == 0) | (row == h - 1) | (col == 0) | (col == w - 1)).to(torch.float64)
        self.loc += (omega * peak).sum(dim=0).numpy()
        self.edge -= (omega * on_border).sum(dim=0).numpy()

    def rebase(self, shift: np.ndarray) -> None:
        """Express the centred sums relative to another shift (they are exact either way:
        Σ(x−s') = Σ(x−s) + n(s−s'), Σ(x−s')² = Σ(x−s)² + 2(s−s')Σ(x−s) + n(s−s')², and the cross products alike)."""
        shift = np.asarray(shift, dtype=np.float64)
        if self._shift is not None:
            d = self._shift - shift
            self.cross += (
                np.outer(self.sum_x, d)
                + np.outer(d, self.sum_x)
                + self.num_samples * np.outer(d, d)
            )
            self.sum_x2 += 2 * d * self.sum_x + self.num_samples * d**2
            self.sum_x += self.num_samples * d
            self.class_sums += self.class_counts[:, None] * d
        self._shift = shift

    def reduced(self, dist) -> StatisticsAccumulator:  #: dist: training.runtime.Distributed
        """This accumulator with every rank's sums added (all ranks get the same): the
        statistics of the whole training set when each rank saw its own share of it."""
        if not dist.enabled:
            return self
        shift = dist.broadcast(self._shift)  # rank 0's first batch: one shift for every rank
        self.rebase(np.zeros(self.num_features) if shift is None else shift)
        names = ("sum_x", "sum_x2", "class_sums", "class_counts", "cross", "loc", "edge")
        for name in names:
            setattr(self, name, dist.sum(getattr(self, name)))
        self.num_samples = int(dist.sum(np.array([self.num_samples]))[0])
        return self

    def finalize(self) -> AssignmentStatistics:
        if self.num_samples == 0:
            raise ValueError("no samples were accumulated")
        missing = np.flatnonzero(self.class_counts == 0)
        if missing.size:
            raise ValueError(f"classes {missing[:10].tolist()} have no training samples")
        n = self.num_samples
        # the shift cancels in the correlation; it is added back for the mean
        A = normalised_correlation(self.sum_x, self.sum_x2, self.class_sums, self.class_counts, n)
        mean_c = self.sum_x / n
        std = np.sqrt(np.maximum(self.sum_x2 / n - mean_c**2, 0.0))
        return AssignmentStatistics(
            A=A,
            R=redundancy(A),
            R_within=within_class_redundancy(self.cross, self.class_sums, self.class_counts),
            b=locality_bias(self.loc / n, self.edge),
            mean=mean_c + self._shift,
            std=std,
            num_samples=n,
        )
