"""Stanford Cars in its official layout (the devkit's .mat annotations, read with scipy).

ROOT holds `devkit/cars_meta.mat`, `devkit/cars_train_annos.mat`, `cars_train/`, `cars_test/`
and the labelled test annotations `cars_test_annos_withlabels.mat` (published separately from
the devkit, whose `cars_test_annos.mat` has no classes). torchvision's layout, the same files
under ROOT/stanford_cars/, is accepted too. Each annotation has `fname`, `class` (1-based) and
the box `bbox_x1, bbox_y1, bbox_x2, bbox_y2`, used with `crop_to_bbox`.
"""

from __future__ import annotations

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

ANNOTATION_FIELDS = ("fname", "class", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


@dataclass(frozen=True)
class CarsLayout:
    meta: Path
    annotations: dict[str, Path]
    images: dict[str, Path]


def check_files(cfg: DataConfig) -> CarsLayout:
    root = require_dir(
        cfg.dataset_root, "the Stanford Cars folder (devkit/, cars_train/, cars_test/)"
    )
    if not (root / "devkit").is_dir() and (root / "stanford_cars" / "devkit").is_dir():
        root = root / "stanford_cars"
    devkit = require_dir(root / "devkit", "the Stanford Cars devkit (car_devkit.tgz extracted)")
    test_annos = root / "cars_test_annos_withlabels.mat"
    if not test_annos.is_file() and (devkit / test_annos.name).is_file():
        test_annos = devkit / test_annos.name
    return CarsLayout(
        meta=require_file(devkit / "cars_meta.mat", "the class names (devkit/cars_meta.mat)"),
        annotations={
            "train": require_file(devkit / "cars_train_annos.mat", "the training annotations"),
            "test": require_file(
                test_annos,
                "the labelled test annotations (cars_test_annos_withlabels.mat, next to devkit/)",
            ),
        },
        images={s: require_dir(root / f"cars_{s}", f"the {s} images") for s in ("train", "test")},
    )


def _loadmat(path: Path, key: str) -> np.ndarray:
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path), squeeze_me=True)
    except Exception as e:  # noqa: BLE001 (damaged files raise IndexError, ValueError, MatReadError, ...)
        raise DataConfigError(
            f"{path}: cannot be read as a MATLAB file ({type(e).__name__}: {e})"
        ) from None
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DataConfigError(f"{path}: has no variable '{key}' (found {found})")
    return np.atleast_1d(data[key])


def read_annotations(
    path: Path, images: Path, num_classes: int, crop: bool
) -> tuple[list[ImageFile], list[int]]:
    annos = _loadmat(path, "annotations")
    names = annos.dtype.names or ()
    missing = [f for f in ANNOTATION_FIELDS if f not in names]
    if missing:
        raise DataConfigError(f"{path}: annotations lack field(s) {missing} (found {list(names)})")
    files, labels = [], []
    for i, row in enumerate(annos):
        label = int(row["class"])
        if not 1 <= label <= num_classes:
            raise DataConfigError(
                f"{path}: annotation {i} ({row['fname']}) has class {label}, not in 1..{num_classes}"
            )
        box = None
        if crop:
            # Inclusive pixel corners; +1 makes the right/bottom edge exclusive like PIL's crop.
            box = (
                float(row["bbox_x1"]),
                float(row["bbox_y1"]),
                float(row["bbox_x2"]) + 1,
                float(row["bbox_y2"]) + 1,
            )
        files.append(ImageFile(images / str(row["fname"]), box))
        labels.append(label - 1)
    return files, labels


def open_splits(cfg: DataConfig) -> DataSplits:
    layout = check_files(cfg)
    class_names = [str(name).strip() for name in _loadmat(layout.meta, "class_names")]
    if not class_names:
        raise DataConfigError(f"{layout.meta}: 'class_names' is empty")
    splits = []
    for split in ("train", "test"):
        files, labels = read_annotations(
            layout.annotations[split], layout.images[split], len(class_names), cfg.crop_to_bbox
        )
        if not files:
            raise DataConfigError(f"{layout.annotations[split]}: holds no annotations")
        require_images_exist([f.path for f in files], str(layout.images[split]))
        splits.append(FileDataset(files, labels, class_names, split))
    return DataSplits("stanford_cars", splits[0], splits[1], class_names)
