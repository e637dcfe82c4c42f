"""From a DataConfig to the train and test datasets the pipeline trains and evaluates on."""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

import numpy as np

from ..errors import DataConfigError
from .base import DataSplits, ImageDataset, stratified_indices
from .config import DataConfig

#: dataset name → module with `check_files(cfg)` (layout checks, no image reads) and
#: `open_splits(cfg) -> DataSplits` (the full splits, every listed file checked).
LOADERS: dict[str, str] = {
    "concepts": "training.data.concepts",
    "fashion_mnist": "training.data.fashion_mnist",
    "imagefolder": "training.data.imagefolder",
    "cub200": "training.data.cub",
    "stanford_cars": "training.data.stanford_cars",
}


def loader_for(name: str) -> ModuleType:
    return importlib.import_module(LOADERS[name])


def check_dataset_files(cfg: DataConfig) -> None:
    """Check, without reading images, that the dataset's files are where the config says
    (DataConfigError naming the missing path if not)."""
    loader_for(cfg.name).check_files(cfg)


def build_datasets(cfg: DataConfig) -> DataSplits:
    """The dataset's splits, subsets applied, every file checked; ground truth for 'concepts'.

    Raises DataConfigError (naming the path, file or field) for anything that would otherwise
    fail later inside a DataLoader.
    """
    splits = loader_for(cfg.name).open_splits(cfg)
    train = _subset(splits.train, cfg.train_subset, [cfg.seed, 0], "data.train_subset")
    test = _subset(splits.test, cfg.test_subset, [cfg.seed, 1], "data.test_subset")
    calibration, source = splits.calibration, splits.calibration_source
    if cfg.calibration is not None and calibration is None:
        calibration, train, source = _held_out(cfg, splits.train, train)
    ground_truth = None
    if cfg.name == "concepts":
        from .concepts import ground_truth as concept_ground_truth

        ground_truth = concept_ground_truth(train, test)
    return dataclasses.replace(
        splits,
        train=train,
        test=test,
        ground_truth=ground_truth,
        calibration=calibration,
        calibration_source=source,
    )


def _held_out(
    cfg: DataConfig, full: ImageDataset, train: ImageDataset
) -> tuple[ImageDataset, ImageDataset, str]:
    """(calibration split, training split, where the calibration images come from) for a
    dataset without a held-out split of its own (docs/method.md §9). With train_subset, the
    calibration images are drawn from the training images it leaves out, so training is
    unchanged; without it they are carved out first, and training uses the rest. Never from
    the test split. Class-stratified either way."""
    size, field = cfg.calibration, "data.calibration"
    if cfg.train_subset is None:
        chosen = stratified_indices(full.labels, size, full.num_classes, [cfg.seed, 2], field)
        rest = np.setdiff1d(np.arange(len(full)), chosen)
        if len(rest) == 0:
            raise DataConfigError(f"field '{field}' is {size}: no training images would be left")
        return full.subset(chosen), full.subset(rest), "carved from the training images"
    used = stratified_indices(
        full.labels, cfg.train_subset, full.num_classes, [cfg.seed, 0], "data.train_subset"
    )
    unused = np.setdiff1d(np.arange(len(full)), used)
    if size > len(unused):
        raise DataConfigError(
            f"field '{field}' is {size}, but train_subset leaves only {len(unused)} training "
            "images unused; lower one of them"
        )
    chosen = unused[
        stratified_indices(full.labels[unused], size, full.num_classes, [cfg.seed, 2], field)
    ]
    return full.subset(chosen), train, "training images not in train_subset"


def _subset(dataset: ImageDataset, size: int | None, seed: list[int], field: str) -> ImageDataset:
    if size is None:
        return dataset
    return dataset.subset(
        stratified_indices(dataset.labels, size, dataset.num_classes, seed, field)
    )
