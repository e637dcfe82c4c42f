"""All three figures of a model at once, for demos and model cards: the clearest prediction,
the two most similar classes side by side, and the whole assignment.

"Most similar" follows the QPM paper's choice of class pairs to show: the pair sharing the most
features, so the few features that differ are what tells the classes apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..explain import InterpretableModel
from .assignment import assignment_figure
from .comparison import comparison_figure
from .examples import best_predicted, find_images
from .explanation import explanation_figure
from .render import DEFAULT_DPI, save_figure

FIGURE_NAMES = ("explanation.png", "comparison.png", "assignment.png")


def most_similar_pair(model: InterpretableModel, classes: Any = None) -> tuple[int, int]:
    """The two classes (among `classes`, default all) whose features overlap most: most shared
    features, then fewest features that differ; ties go to the lower class indices."""
    if classes is None:
        pool = list(range(model.config.num_classes))
    else:
        pool = sorted({model.class_index(c) for c in classes})
    if len(pool) < 2:
        raise InputError(f"a comparison needs two classes, got {len(pool)}")
    used = (np.asarray(model.class_weights)[pool] != 0).astype(int)
    shared = used @ used.T
    differ = used.sum(axis=1)[:, None] + used.sum(axis=1)[None, :] - 2 * shared
    pairs = [(i, j) for i in range(len(pool)) for j in range(i + 1, len(pool))]
    i, j = max(pairs, key=lambda ij: (shared[ij], -differ[ij], -ij[0], -ij[1]))
    return pool[i], pool[j]


def write_figures(
    model: InterpretableModel, images: Any, folder: str | os.PathLike, dpi: int = DEFAULT_DPI
) -> dict[str, Path]:
    """Write explanation.png, comparison.png and assignment.png into `folder`; return their paths.

    `images` (a list of images, or a folder) supply the examples: the explanation is drawn for
    the image predicted with the highest probability, the comparison for the most similar pair
    among the classes the images are predicted as. Raises InputError, before writing anything,
    when the images are predicted as fewer than two classes.
    """
    candidates = find_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    predictions = model.predict(candidates)
    predicted = sorted({p.class_index for p in predictions})
    if len(predicted) < 2:
        raise InputError(
            f"all {len(predictions)} images are predicted as {model.label_names[predicted[0]]!r}; "
            "a class comparison needs images of at least two classes"
        )
    a, b = most_similar_pair(model, predicted)
    clearest = max(range(len(predictions)), key=lambda i: (predictions[i].probability, -i))
    chosen = [clearest, *best_predicted(predictions, [a, b], model.label_names)]
    explained = model.predict_with_maps([candidates[i] for i in chosen])
    folder = Path(folder)
    return {
        "explanation": save_figure(
            explanation_figure(model, explained[0]), folder / FIGURE_NAMES[0], dpi
        ),
        "comparison": save_figure(
            comparison_figure(model, a, b, explained[1:]), folder / FIGURE_NAMES[1], dpi
        ),
        "assignment": save_figure(assignment_figure(model), folder / FIGURE_NAMES[2], dpi),
    }
