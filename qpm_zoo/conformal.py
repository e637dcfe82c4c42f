"""Split conformal prediction: nonconformity scores, calibrated thresholds and prediction sets
(docs/method.md §9). Numpy only: the ONNX inference path uses it on servers without torch.

Given n labelled calibration images exchangeable with the images the model will see, the
threshold q̂ is the ⌈(n + 1)·coverage⌉-th smallest score of the true classes; the set of a new
image is every class whose score is at most q̂, and it holds the true class with probability at
least `coverage` (over the calibration draw and the new image together). Three scores:

- ``lac`` (least ambiguous set-valued classifier): 1 − p(class). The smallest sets on average.
- ``aps`` (adaptive prediction sets): the probability mass of the classes ranked above the
  class, so uncertain images get larger sets. Not randomised (APS with u = 0): a set never
  depends on a random draw. The most probable class scores 0, so it is in every set.
- ``raps`` (regularised APS): APS plus λ·max(0, rank − k_reg), which keeps APS's sets from
  growing into the long tail of unlikely classes.

A set can be empty: with LAC, when no class's score is within q̂ (an image whose top class is
less probable than 1 − q̂). That is a legitimate answer: at this coverage the image is among
those the target lets go, and an empty set is what makes the sets cover close to the target, not
far above it, on a model more accurate than the target. `never_empty=True` puts the most
probable class in such sets instead: that can only add the true class, so it only raises
coverage (up to the model's accuracy) and the sets no longer cover close to the target
(docs/method.md §9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from .errors import UsageError

Score = Literal["lac", "aps", "raps"]
SCORES: tuple[str, ...] = get_args(Score)

#: RAPS's defaults (Angelopoulos et al., "Uncertainty Sets for Image Classifiers using
#: Conformal Prediction", ICLR 2021, use λ = 0.01 and k_reg = 5 on ImageNet).
RAPS_LAMBDA = 0.01
RAPS_K_REG = 5


@dataclass(frozen=True)
class ScoreFunction:
    """Which nonconformity score, with RAPS's penalty when it is ``raps``."""

    name: Score = "lac"
    raps_lambda: float = RAPS_LAMBDA  #: penalty per rank beyond k_reg (raps only)
    raps_k_reg: int = RAPS_K_REG  #: ranks without penalty (raps only)

    def __post_init__(self) -> None:
        if self.name not in SCORES:
            raise UsageError(f"score must be one of {', '.join(SCORES)}, got {self.name!r}")
        if self.name == "raps" and (self.raps_lambda < 0 or self.raps_k_reg < 0):
            raise UsageError(
                f"RAPS needs lambda >= 0 and k_reg >= 0, got {self.raps_lambda}, {self.raps_k_reg}"
            )

    def class_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """Every class's nonconformity [N, C] from softmax probabilities [N, C]."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self.name == "lac":
            return 1.0 - p
        order = np.argsort(-p, axis=1, kind="stable")
        ranked = np.take_along_axis(p, order, axis=1)
        mass = np.cumsum(ranked, axis=1) - ranked  # the classes ranked above, not its own
        if self.name == "raps":
            rank = np.arange(1, p.shape[1] + 1, dtype=np.float64)
            mass = mass + self.raps_lambda * np.maximum(0.0, rank - self.raps_k_reg)
        scores = np.empty_like(mass)
        np.put_along_axis(scores, order, mass, axis=1)
        return scores

    def true_class_scores(self, probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The nonconformity of each image's true class [N]: what calibration ranks."""
        labels = np.asarray(labels, dtype=np.int64)
        return self.class_scores(probabilities)[np.arange(len(labels)), labels]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (the probabilities `predict` reports)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def check_coverage(coverage: float) -> float:
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float)):
        raise UsageError(f"coverage must be a number between 0 and 1, got {coverage!r}")
    if not 0.0 < coverage < 1.0:
        raise UsageError(f"coverage must be between 0 and 1 (exclusive), got {coverage}")
    return float(coverage)


def minimum_images(coverage: float) -> int:
    """The fewest calibration images for which `coverage` has a finite threshold:
    ⌈(n + 1)·coverage⌉ ≤ n."""
    n = 1
    while math.ceil((n + 1) * coverage) > n:
        n += 1
    return n


def conformal_threshold(scores: Sequence[float] | np.ndarray, coverage: float) -> float:
    """q̂: the ⌈(n + 1)·coverage⌉-th smallest of the n calibration scores."""
    coverage = check_coverage(coverage)
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        raise UsageError(
            f"{n} calibration images cannot calibrate a coverage of {coverage:g} "
            f"(it needs at least {minimum_images(coverage)})"
        )
    return float(s[rank - 1])


def prediction_sets(
    class_scores: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    never_empty: bool = False,
):
    """Each image's set as class indices, most probable first (a list of tuples; empty where no
    class is within the threshold), and whether `never_empty` put the top class into a set
    that would have been empty ([N] bool, all False without it)."""
    scores = np.atleast_2d(np.asarray(class_scores, dtype=np.float64))
    p = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    order = np.argsort(-p, axis=1, kind="stable")
    sets, filled = [], np.zeros(len(p), dtype=bool)
    for i in range(len(p)):
        members = tuple(int(c) for c in order[i] if scores[i, c] <= threshold)
        if not members and never_empty:
            members, filled[i] = (int(order[i, 0]),), True
        sets.append(members)
    return sets, filled


@dataclass(frozen=True)
class SetEvaluation:
    """How prediction sets did on labelled images: what the model card reports."""

    coverage: float  #: the target
    images: int
    empirical_coverage: float  #: share of the sets that hold the true class
    mean_size: float  #: average number of classes per set (empty sets count 0)
    worst_class: int  #: the class whose images are covered least often
    worst_class_coverage: float
    empty_share: float  #: share of empty sets (never_empty: of sets that were the top class)
    never_empty: bool = False  #: whether the sets were made never empty


def evaluate_sets(
    probabilities: np.ndarray,
    labels: np.ndarray,
    score: ScoreFunction,
    threshold: float,
    coverage: float,
    never_empty: bool = False,
) -> SetEvaluation:
    """Coverage, average size, the worst class's coverage and the share of empty sets of the
    sets `predict` returns (with `never_empty` as given) on labelled images."""
    labels = np.asarray(labels, dtype=np.int64)
    sets, filled = prediction_sets(
        score.class_scores(probabilities), probabilities, threshold, never_empty
    )
    hit = np.array([int(y) in s for s, y in zip(sets, labels)], dtype=bool)
    empty = filled if never_empty else np.array([not s for s in sets], dtype=bool)
    per_class = {int(c): float(hit[labels == c].mean()) for c in np.unique(labels)}
    worst = min(per_class, key=lambda c: (per_class[c], c))
    return SetEvaluation(
        coverage=float(coverage),
        images=len(labels),
        empirical_coverage=float(hit.mean()),
        mean_size=float(np.mean([len(s) for s in sets])),
        worst_class=worst,
        worst_class_coverage=per_class[worst],
        empty_share=float(empty.mean()),
        never_empty=bool(never_empty),
    )
