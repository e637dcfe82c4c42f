"""Real images for validating and calibrating exports: a folder, or the checkpoint's own split.

    --images / --calibration SOURCE   a folder (its images, recursively), an image file, or
                                      `test` / `train`: that split of the dataset config.json's
                                      training recipe names (rebuilt as training built it)

A split or a folder larger than `limit` is sampled evenly (every k-th image, in order), so the
sample covers all classes of a class-sorted split and is the same on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qpm_zoo.config import QPMConfig
from qpm_zoo.errors import UsageError
from qpm_zoo.preprocess import LoadedImage, list_images, load_image

SPLITS = ("test", "train")


def evenly_spaced(count: int, limit: int) -> list[int]:
    """`min(count, limit)` indices spread over range(count), first one included."""
    if count <= limit:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit)})


def real_images(sources: Sequence[str], config: QPMConfig, limit: int) -> list[LoadedImage]:
    """Up to `limit` images from each source (see the module docstring), in order."""
    images: list[LoadedImage] = []
    for source in sources:
        if source in SPLITS:
            images.extend(split_images(config, source, limit))
            continue
        path = Path(source)
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise UsageError(f"{path}: the folder holds no image files")
            images.extend(load_image(str(files[i])) for i in evenly_spaced(len(files), limit))
        elif path.is_file():
            images.append(load_image(str(path)))
        else:
            raise UsageError(
                f"{source}: no such image file or folder (or give a split: {', '.join(SPLITS)})"
            )
    return images


def split_images(config: QPMConfig, split: str, limit: int) -> list[LoadedImage]:
    """Up to `limit` images of the checkpoint's own `split`, from its training recipe."""
    if not config.training.get("data"):
        raise UsageError(
            f"config.json has no training recipe naming its dataset, so there is no '{split}' "
            "split; give a folder of images instead"
        )
    from training.config import FitConfig
    from training.data.build import build_datasets

    splits = build_datasets(
        FitConfig.from_training_record(config.training, source="config.json training").data
    )
    dataset = splits.test if split == "test" else splits.train
    return [
        LoadedImage(f"{split}[{i}]", dataset.image(i)) for i in evenly_spaced(len(dataset), limit)
    ]
