"""The pointing game: does a feature's map peak on the concept it was matched to?

For each feature f matched to concept c and each test image that contains a visible instance
of c, one trial: a hit when the map's maximum falls inside the box of a visible instance of c.
Score = hits / trials, pooled over all matched features (`overall`) and per feature.

Conventions:
- Map → image: cell (i, j) of an h × w map stands for the point at its centre,
  x = (j + 0.5) · W / w, y = (i + 0.5) · H / h, in the pixel coordinates of the image as the
  model saw it (after resizing/cropping; boxes must be in those coordinates, (x0, y0, x1, y1),
  edges inclusive). The maximum is the first one in row-major order.
- A map that is constant (e.g. all zero: the feature did not fire) points nowhere: a miss.
- Invisible (fully occluded) instances are ignored: an image whose only instances of c are
  invisible is no trial for c's features (there is nothing to point at), and their boxes
  never make a hit.
- Unmatched features (concept -1) play no trials.
Streaming: `PointingGame.update()` per batch, because the maps of a test set do not fit in memory.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import float_array, int_array, map_batch, same_length
from ._serialise import json_float, json_list
from .concept_matching import UNMATCHED


@dataclass(frozen=True)
class ConceptInstance:
    """One occurrence of a concept in an image."""

    concept_id: int
    box: tuple[float, float, float, float]  #: (x0, y0, x1, y1) in image pixels, inclusive
    visible: bool = True


@dataclass(frozen=True)
class PointingResult:
    overall: float  #: hits / trials pooled over all matched features
    feature_mean: float  #: mean of the per-feature rates over features with trials
    per_feature: np.ndarray  #: [n] hit rate, NaN if unmatched or without trials
    hits: np.ndarray  #: [n] int
    trials: np.ndarray  #: [n] int

    def to_dict(self) -> dict:
        return {
            "overall": self.overall,
            "feature_mean": json_float(self.feature_mean),
            "per_feature": json_list(self.per_feature),
            "hits": json_list(self.hits),
            "trials": json_list(self.trials),
        }


class PointingGame:
    """Streaming pointing game over batches of maps [B, n, h, w] and their annotations."""

    def __init__(self, feature_concept: Any, image_width: float, image_height: float):
        self.feature_concept = int_array(feature_concept, "feature_concept", UNMATCHED, None)
        for name, value in (("image_width", image_width), ("image_height", image_height)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.number))
                or not value > 0
            ):
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
        self.image_width, self.image_height = float(image_width), float(image_height)
        self._matched = np.flatnonzero(self.feature_concept != UNMATCHED)
        self._features_of: dict[int, list[int]] = defaultdict(list)
        for position, f in enumerate(self._matched):  # position among the matched features
            self._features_of[int(self.feature_concept[f])].append(position)
        self.hits = np.zeros(len(self.feature_concept), dtype=np.int64)
        self.trials = np.zeros(len(self.feature_concept), dtype=np.int64)

    def update(self, feature_maps: Any, annotations: Sequence[Sequence[Any]]) -> None:
        """Add a batch. annotations[b]: image b's instances, each a ConceptInstance, any object
        with the attributes concept_id, box, visible, or a tuple (concept_id, box, visible)."""
        maps = map_batch(feature_maps, len(self.feature_concept), "feature_concept")
        same_length(("feature_maps", maps.shape[0]), ("annotations", len(annotations)))
        # all checked before anything is counted: a bad batch leaves the totals untouched
        visible = [
            _visible_boxes(items, f"annotations[{b}]") for b, items in enumerate(annotations)
        ]
        if len(self._matched) == 0:
            return
        height, width = maps.shape[2:]
        flat = float_array(maps[:, self._matched], "feature_maps", 4).reshape(
            maps.shape[0], len(self._matched), -1
        )
        peak = flat.argmax(axis=2)
        points_somewhere = flat.max(axis=2) > flat.min(axis=2)
        peak_x = (peak % width + 0.5) * self.image_width / width
        peak_y = (peak // width + 0.5) * self.image_height / height
        for b, concept_boxes in enumerate(visible):
            for concept, boxes in concept_boxes.items():
                for position in self._features_of.get(concept, ()):
                    f = self._matched[position]
                    self.trials[f] += 1
                    x, y = peak_x[b, position], peak_y[b, position]
                    if points_somewhere[b, position] and any(
                        x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes
                    ):
                        self.hits[f] += 1

    def compute(self) -> PointingResult:
        total = int(self.trials.sum())
        if total == 0:
            raise ValueError("no trial: no image contained a visible instance of a matched concept")
        with np.errstate(divide="ignore", invalid="ignore"):
            per_feature = np.where(self.trials > 0, self.hits / self.trials, np.nan)
        return PointingResult(
            overall=float(self.hits.sum() / total),
            feature_mean=float(np.nanmean(per_feature)),
            per_feature=per_feature,
            hits=self.hits.copy(),
            trials=self.trials.copy(),
        )


def pointing_game(
    feature_maps: Any,
    feature_concept: Any,
    annotations: Sequence[Sequence[Any]],
    image_width: float,
    image_height: float,
) -> PointingResult:
    """The pointing game on maps [N, n, h, w] held in memory; see `PointingGame` for batches."""
    game = PointingGame(feature_concept, image_width, image_height)
    game.update(feature_maps, annotations)
    return game.compute()


def _visible_boxes(instances: Sequence[Any], name: str) -> dict[int, list[tuple[float, ...]]]:
    """Concept id → boxes of its visible instances in one image (checked)."""
    boxes: dict[int, list[tuple[float, ...]]] = defaultdict(list)
    for i, item in enumerate(instances):
        instance = _as_instance(item, f"{name}[{i}]")
        if instance.visible:
            boxes[instance.concept_id].append(instance.box)
    return boxes


def _as_instance(item: Any, name: str) -> ConceptInstance:
    if not isinstance(item, ConceptInstance) and all(
        hasattr(item, a) for a in ("concept_id", "box", "visible")
    ):  # another record of the same three facts (e.g. the dataset's own instance type)
        item = ConceptInstance(item.concept_id, item.box, item.visible)
    if not isinstance(item, ConceptInstance):
        try:
            concept_id, box, visible = item
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a ConceptInstance or (concept_id, (x0, y0, x1, y1), visible), got {item!r}"
            ) from None
        item = ConceptInstance(concept_id, box, visible)
    if (
        isinstance(item.concept_id, bool)
        or not isinstance(item.concept_id, (int, np.integer))
        or item.concept_id < 0
    ):
        raise ValueError(f"{name}: concept_id must be an integer >= 0, got {item.concept_id!r}")
    try:
        box = tuple(float(v) for v in item.box)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: box must be 4 numbers (x0, y0, x1, y1), got {item.box!r}"
        ) from None
    if (
        len(box) != 4
        or not all(math.isfinite(v) for v in box)
        or box[0] > box[2]
        or box[1] > box[3]
    ):
        raise ValueError(
            f"{name}: box must be finite (x0, y0, x1, y1) with x0 <= x1, y0 <= y1, got {item.box!r}"
        )
    if not isinstance(item.visible, (bool, np.bool_)):
        raise ValueError(f"{name}: visible must be a bool, got {item.visible!r}")  # noqa: TRY004 (project rule)
    return ConceptInstance(int(item.concept_id), box, bool(item.visible))
