"""Data for the training pipeline: the known-concept dataset and the real dataset loaders.

from training.data import DataConfig, build_datasets, train_transform, eval_transform

cfg = DataConfig.from_dict({"name": "concepts", "concepts": {"num_classes": 12}}, "config.yaml")
splits = build_datasets(cfg)              # DataSplits: train, test, class_names, ground_truth, ...
splits.train.transform = train_transform(preprocessing, "light")
splits.test.transform = eval_transform(preprocessing)
"""

from .base import DataSplits, ImageDataset, stratified_indices
from .build import build_datasets
from .concepts import ConceptGroundTruth, ConceptInstance, ImageTruth
from .config import ConceptsConfig, DataConfig, DataConfigError
from .transforms import AUGMENTS, default_augment, eval_transform, train_transform

__all__ = [
    "AUGMENTS",
    "ConceptGroundTruth",
    "ConceptInstance",
    "ConceptsConfig",
    "DataConfig",
    "DataConfigError",
    "DataSplits",
    "ImageDataset",
    "ImageTruth",
    "build_datasets",
    "default_augment",
    "eval_transform",
    "stratified_indices",
    "train_transform",
]
