"""CUB-200-2011 in its official layout, with optional ground-truth box crops and class attributes.

ROOT may be the folder that holds `CUB_200_2011/` (as the official archive extracts) or
`CUB_200_2011/` itself. Read: images.txt, image_class_labels.txt, train_test_split.txt,
classes.txt, images/, bounding_boxes.txt (for `crop_to_bbox`, the paper's setting) and, when
present, attributes/class_attribute_labels_continuous.txt (a [200, 312] table of the share of
a class's images showing each attribute, used by the Structural Grounding metric) with the
attribute names from attributes.txt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataConfigError
from .base import (
    DataSplits,
    FileDataset,
    ImageFile,
    require_dir,
    require_file,
    require_images_exist,
)
from .config import DataConfig

ATTRIBUTE_TABLE = Path("attributes") / "class_attribute_labels_continuous.txt"


@dataclass(frozen=True)
class CubLayout:
    base: Path  # the CUB_200_2011 folder
    attribute_table: Path | None
    attribute_names: Path | None


def check_files(cfg: DataConfig) -> CubLayout:
    root = require_dir(
        cfg.dataset_root, "the CUB-200-2011 folder (holding CUB_200_2011/ or images.txt)"
    )
    base = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
    needed = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"]
    if cfg.crop_to_bbox:
        needed.append("bounding_boxes.txt")
    for name in needed:
        require_file(base / name, f"CUB-200-2011's {name} (official layout: CUB_200_2011/{name})")
    require_dir(base / "images", "CUB-200-2011's images/<class>/<file>.jpg")
    table = base / ATTRIBUTE_TABLE
    names = next(
        (
            p
            for p in (
                root / "attributes.txt",
                base / "attributes.txt",
                base / "attributes" / "attributes.txt",
            )
            if p.is_file()
        ),
        None,
    )
    return CubLayout(base, table if table.is_file() else None, names)


def read_rows(path: Path, types: tuple[Callable, ...]) -> list[tuple]:
    """Whitespace-separated rows converted by `types` (the last column keeps inner spaces)."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=len(types) - 1)
            if len(parts) != len(types):
                raise DataConfigError(
                    f"{path}: line {number} has {len(parts)} columns, expected {len(types)}"
                )
            try:
                rows.append(tuple(t(p) for t, p in zip(types, parts)))
            except ValueError:
                raise DataConfigError(
                    f"{path}: line {number} cannot be parsed: {line.strip()!r}"
                ) from None
    return rows


def _by_id(path: Path, types: tuple[Callable, ...]) -> dict[int, tuple]:
    table: dict[int, tuple] = {}
    for row in read_rows(path, (int, *types)):
        if row[0] in table:
            raise DataConfigError(f"{path}: id {row[0]} appears twice")
        table[row[0]] = row[1:]
    return table


def pretty_class_name(folder_name: str) -> str:
    """'001.Black_footed_Albatross' → 'Black footed Albatross'."""
    head, dot, rest = folder_name.partition(".")
    name = rest if dot and head.isdigit() else folder_name
    return name.replace("_", " ")


def read_class_attributes(
    layout: CubLayout, num_classes: int
) -> tuple[np.ndarray | None, list[str] | None]:
    """The [C, A] class-attribute table (percent of images, 0..100) and the attribute names."""
    if layout.attribute_table is None:
        return None, None
    try:
        table = np.loadtxt(layout.attribute_table, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataConfigError(f"{layout.attribute_table}: not a numeric table ({e})") from None
    if table.shape[0] != num_classes:
        raise DataConfigError(
            f"{layout.attribute_table}: has {table.shape[0]} rows, expected one per class ({num_classes})"
        )
    names = None
    if layout.attribute_names is not None:
        names = [name for _, name in read_rows(layout.attribute_names, (int, str))]
        if len(names) != table.shape[1]:
            raise DataConfigError(
                f"{layout.attribute_names}: names {len(names)} attributes, but {layout.attribute_table} has {table.shape[1]} columns"
            )
    return table, names


def open_splits(cfg: DataConfig) -> DataSplits:
    layout = check_files(cfg)
    base = layout.base
    classes = sorted(read_rows(base / "classes.txt", (int, str)))
    class_ids = [cid for cid, _ in classes]
    if class_ids != list(range(1, len(classes) + 1)):
        raise DataConfigError(f"{base / 'classes.txt'}: class ids must run 1..{len(classes)}")
    class_names = [pretty_class_name(name) for _, name in classes]

    images = _by_id(base / "images.txt", (str,))
    labels = _by_id(base / "image_class_labels.txt", (int,))
    is_train = _by_id(base / "train_test_split.txt", (int,))
    boxes = (
        _by_id(base / "bounding_boxes.txt", (float, float, float, float))
        if cfg.crop_to_bbox
        else {}
    )
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)) + (
        (("bounding_boxes.txt", boxes),) if cfg.crop_to_bbox else ()
    ):
        missing = sorted(set(images) - set(table))
        if missing:
            raise DataConfigError(
                f"{base / name}: no entry for image id(s) {missing[:5]} listed in images.txt"
            )

    samples: dict[str, tuple[list[ImageFile], list[int]]] = {"train": ([], []), "test": ([], [])}
    for image_id in sorted(images):
        label = labels[image_id][0]
        if not 1 <= label <= len(class_names):
            raise DataConfigError(
                f"{base / 'image_class_labels.txt'}: image {image_id} has class {label}, not in 1..{len(class_names)}"
            )
        box = None
        if cfg.crop_to_bbox:
            x, y, w, h = boxes[image_id]
            box = (x, y, x + w, y + h)
        split = "train" if is_train[image_id][0] == 1 else "test"
        samples[split][0].append(ImageFile(base / "images" / images[image_id][0], box))
        samples[split][1].append(label - 1)
    require_images_exist([f.path for split in samples.values() for f in split[0]], str(base))

    attributes, attribute_names = read_class_attributes(layout, len(class_names))
    train, test = (FileDataset(*samples[s], class_names, s) for s in ("train", "test"))
    for split in (train, test):
        if len(split) == 0:
            raise DataConfigError(
                f"{base / 'train_test_split.txt'}: the {split.split} split is empty"
            )
    return DataSplits(
        "cub200",
        train,
        test,
        class_names,
        class_attributes=attributes,
        attribute_names=attribute_names,
    )
