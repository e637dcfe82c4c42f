"""Choosing example images: image files under folders, and the best-predicted image per class.

A class comparison shows each class on an image the model itself assigns to that class, so the
maps show the features at work rather than on an image the model gets wrong.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..explain import ExplainedImage, InterpretableModel, Prediction
from ..preprocess import IMAGE_EXTENSIONS, list_images


def find_images(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Image files given as files or folders (searched recursively, hidden entries skipped).

    Files are taken as given, in order; each folder adds its images in sorted order.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            inside = list_images(path)
            if not inside:
                raise InputError(
                    f"{path}: no image files in this folder or below ({', '.join(IMAGE_EXTENSIONS)})"
                )
            found.extend(inside)
        else:
            raise InputError(f"{path}: no such image file or folder")
    if not found:
        raise InputError("no images given")
    return found


def pick_class_examples(
    model: InterpretableModel, images: Any, classes: Sequence[int | str]
) -> list[ExplainedImage]:
    """For each class, the image the model predicts as that class with the highest probability,
    explained with its feature maps (in the order of `classes`).

    `images` is a list of images (paths, PIL images, arrays) or one folder or file path.

    Raises InputError naming the class when none of the images is predicted as it.
    """
    wanted = [model.class_index(c) for c in classes]
    candidates = find_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    predictions = model.predict(candidates) if candidates else []
    chosen = best_predicted(predictions, wanted, model.label_names)
    return model.predict_with_maps([candidates[i] for i in chosen])


def best_predicted(
    predictions: Sequence[Prediction], classes: Sequence[int], labels: Sequence[str]
) -> list[int]:
    """Per class, the position of its most probable prediction (the first one on ties)."""
    chosen = []
    for c in classes:
        hits = [(p.probability, -i) for i, p in enumerate(predictions) if p.class_index == c]
        if not hits:
            raise InputError(_no_example_message(labels[c], predictions))
        chosen.append(-max(hits)[1])
    return chosen


def _no_example_message(label: str, predictions: Sequence[Any]) -> str:
    if not predictions:
        return f"no images to pick an example of {label!r} from"
    counts = Counter(p.label for p in predictions).most_common(4)
    seen = ", ".join(f"{name} ×{n}" for name, n in counts)
    more = ", ..." if len({p.label for p in predictions}) > len(counts) else ""
    return (
        f"none of the {len(predictions)} images is predicted as {label!r} (the model predicts "
        f"{seen}{more}); add images of {label!r}"
    )
