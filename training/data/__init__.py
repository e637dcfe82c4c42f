"""Data for the training pipeline: the known-concept dataset and the real dataset loaders.

    from training.data import DataConfig, build_datasets, eval_transform, train_transform

    cfg = DataConfig.from_dict({"name": "concepts", "concepts": {"num_classes": 12}}, "demo.yaml")
    splits = build_datasets(cfg)  # DataSplits: train, test, class_names, ground_truth, ...
    splits.train.transform = train_transform(preprocessing, "light")  # one of AUGMENTS
    splits.test.transform = eval_transform(preprocessing)
    truth = splits.ground_truth.as_seen(preprocessing)  # boxes in model-input pixels
    truth.presence("test")  # [N, K] bool; truth.class_concept_matrix(): [C, K] bool
    truth.test[i].instances  # ConceptInstance(concept_id, box, visible, distractor)

Look at the data: python -m training data --sheet sheet.png (training/commands/data.py).
"""

from ..errors import DataConfigError
from .base import DataSplits, ImageDataset, stratified_indices
from .build import build_datasets, check_dataset_files
from .concepts import ConceptGroundTruth, ConceptInstance, ImageTruth
from .config import ConceptsConfig, DataConfig
from .transforms import AUGMENTS, eval_transform, train_transform

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
    "check_dataset_files",
    "eval_transform",
    "stratified_indices",
    "train_transform",
]
