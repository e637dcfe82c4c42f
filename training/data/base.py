"""What every dataset of the pipeline is: labelled samples that load as RGB PIL images.

One base class so that subsets, labels and the optional transform behave the same for
generated, in-memory and on-disk data, and a DataLoader can wrap any of them directly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from qpm_zoo.errors import InputError
from qpm_zoo.preprocess import load_image

from ..errors import DataConfigError


class ImageDataset(Dataset):
    """`dataset[i]` is `(image, label)`: an RGB PIL image (or `transform(image)` when a
    transform is set) and an int class index.

    Subclasses keep one entry per image in `samples` (whatever they need to load it) and
    implement `load(sample)`.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        split: str,
        transform: Callable[[Image.Image], Any] | None = None,
    ):
        self.samples = list(samples)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(self.samples):
            raise ValueError(f"{len(self.samples)} samples but {len(self.labels)} labels")
        self.class_names = list(class_names)
        self.split = split
        self.transform = transform

    def load(self, sample: Any) -> Image.Image:
        raise NotImplementedError

    def image(self, index: int) -> Image.Image:
        """The untransformed RGB image at `index`."""
        return self.load(self.samples[index])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """Images per class, [num_classes]."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """A copy holding only the images at `indices` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = copy.copy(self)
        out.samples = [self.samples[i] for i in indices]
        out.labels = self.labels[indices]
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, images={len(self)}, "
            f"classes={self.num_classes}, transform={self.transform!r})"
        )


def open_rgb(path: str) -> Image.Image:
    """An image file as RGB PIL (the same conversion as inference); errors name the file."""
    try:
        return load_image(path).image
    except InputError as e:
        raise DataConfigError(str(e)) from None


def stratified_indices(
    labels: np.ndarray, size: int, num_classes: int, seed: int | Sequence[int], field: str
) -> np.ndarray:
    """A deterministic sample of `size` indices with each class in proportion to its share.

    Class quotas are rounded by largest remainder, every class keeps at least one image, and
    the result is sorted so the subset keeps the dataset's order. `field` names the config
    field in errors (e.g. 'data.train_subset').
    """
    labels = np.asarray(labels)
    total = len(labels)
    counts = np.bincount(labels, minlength=num_classes)
    present = int((counts > 0).sum())
    if size > total:
        raise DataConfigError(f"field '{field}' is {size}, but the split has only {total} images")
    if size < present:
        raise DataConfigError(
            f"field '{field}' is {size}, fewer than the {present} classes in the split "
            "(a class-stratified subset needs at least one image per class)"
        )
    if size == total:
        return np.arange(total)
    exact = counts * (size / total)
    quota = np.floor(exact).astype(np.int64)
    quota[(counts > 0) & (quota == 0)] = 1
    remainder = size - int(quota.sum())
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for c in order:
        if remainder <= 0:
            break
        if quota[c] < counts[c]:
            quota[c] += 1
            remainder -= 1
    # Too many after the at-least-one rule: take back from the largest quotas.
    while remainder < 0:
        c = int(np.argmax(quota))
        quota[c] -= 1
        remainder += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), quota[c], replace=False)
        for c in range(num_classes)
        if quota[c]
    ]
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class DataSplits:
    """The splits of one dataset and what the metrics need to know about it.

    `train` and `test` return `(PIL RGB image, int label)` until the pipeline sets their
    `transform`. `calibration` is the held-out split prediction sets are calibrated on (when
    `data.calibration` asks for one; `calibration_source` says where it comes from).
    `ground_truth` is set for the known-concept dataset (aligned with `train` and `test` index
    by index), `class_attributes` ([C, A] floats) for CUB when its attribute files are present.
    """

    name: str
    train: ImageDataset
    test: ImageDataset
    class_names: list[str]
    ground_truth: Any = (
        None  # ConceptGroundTruth | None (typed loosely: concepts.py imports this module)
    )
    class_attributes: np.ndarray | None = None
    attribute_names: list[str] | None = None
    calibration: ImageDataset | None = None
    calibration_source: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict:
        """Sizes and per-class counts, JSON-ready (for logs and `--json`)."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "train_images": len(self.train),
            "test_images": len(self.test),
            "train_per_class": [int(v) for v in self.train.class_counts()],
            "test_per_class": [int(v) for v in self.test.class_counts()],
            "calibration_images": None if self.calibration is None else len(self.calibration),
            "calibration_source": self.calibration_source,
            "has_ground_truth": self.ground_truth is not None,
            "class_attributes": None
            if self.class_attributes is None
            else list(self.class_attributes.shape),
        }


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else a DataConfigError naming it and what it should hold."""
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataConfigError(f"{path}: {state}; expected {what}")
    return path


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a DataConfigError naming it and what it should hold."""
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataConfigError(f"{path}: {state}; expected {what}")
    return path


def require_images_exist(paths: Sequence[Path], dataset: str) -> None:
    """Fail before training when files listed by a dataset's metadata are missing."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataConfigError(
            f"{dataset}: {len(missing)} image file(s) listed in its metadata are missing: {shown}{more}"
        )


@dataclass(frozen=True)
class ImageFile:
    """An image on disk, optionally with the object box (x0, y0, x1, y1) to crop it to."""

    path: Path
    box: tuple[float, float, float, float] | None = None


class FileDataset(ImageDataset):
    """Images read from files on disk; `samples` are ImageFile entries."""

    def load(self, sample: ImageFile) -> Image.Image:
        image = open_rgb(str(sample.path))
        if sample.box is None:
            return image
        x0, y0, x1, y1 = sample.box
        left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        right, bottom = min(image.width, int(np.ceil(x1))), min(image.height, int(np.ceil(y1)))
        if right <= left or bottom <= top:
            raise DataConfigError(
                f"{sample.path}: its box {sample.box} lies outside the {image.width}x{image.height} image"
            )
        return image.crop((left, top, right, bottom))
