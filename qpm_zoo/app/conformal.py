"""Prediction sets with a coverage guarantee (split conformal prediction), calibrated on labelled
images when the explorer starts (`qpm app MODEL --calibration DIR`).

The nonconformity of an image is 1 − p(true class). Over n calibration images, the threshold q̂
is their ⌈(n + 1)·coverage⌉-th smallest score; the set of a new image is every class c with
1 − p(c) ≤ q̂, and it holds the true class with probability at least `coverage` for images from
the same distribution (Angelopoulos & Bates, "A Gentle Introduction to Conformal Prediction").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..explain import InterpretableModel
from ..preprocess import list_images


@dataclass(frozen=True)
class ConformalCalibration:
    """The threshold that makes prediction sets reach `coverage`."""

    coverage: float  #: the guaranteed share of sets that hold the true class
    threshold: float  #: q̂: a class is in the set when 1 − p(class) ≤ q̂
    images: int  #: calibration images it was computed from

    def prediction_set(self, logits: np.ndarray) -> tuple[int, ...]:
        """Indices of the classes in the set for one image's logits [C], most probable first."""
        z = np.asarray(logits, dtype=np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        return tuple(int(c) for c in order if 1.0 - p[c] <= self.threshold)


def labelled_images(model: InterpretableModel, folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """(image, class index) from an ImageFolder layout: one subfolder per class, named by the
    class's label (or index)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"--calibration {root}: no such folder")
    pairs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            label = model.class_index(sub.name)
        except InputError as e:
            raise UsageError(f"--calibration {sub}: the folder names no class of the model ({e})")
        pairs += [(path, label) for path in list_images(sub)]
    if not pairs:
        raise UsageError(f"--calibration {root}: no images in class subfolders (CLASS/IMAGE.png)")
    return pairs


def calibrate(
    model: InterpretableModel,
    folder: str | os.PathLike,
    coverage: float = 0.9,
    batch_size: int = 16,
) -> ConformalCalibration:
    """The split-conformal threshold for `coverage` from the labelled images under `folder`."""
    if not 0.0 < coverage < 1.0:
        raise UsageError(f"--coverage must be between 0 and 1 (exclusive), got {coverage}")
    pairs = labelled_images(model, folder)
    n = len(pairs)
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        raise UsageError(
            f"--calibration {folder}: {n} images cannot calibrate a coverage of {coverage:g} "
            f"(needs at least {math.ceil(coverage / (1 - coverage))})"
        )
    predictions = model.predict(
        [str(p) for p, _ in pairs], top_k=model.config.num_classes, batch_size=batch_size
    )
    scores = []
    for prediction, (_, label) in zip(predictions, pairs):
        probability = next(s.probability for s in prediction.top_k if s.index == label)
        scores.append(1.0 - probability)
    threshold = float(np.sort(np.asarray(scores))[rank - 1])
    return ConformalCalibration(coverage=coverage, threshold=threshold, images=n)
