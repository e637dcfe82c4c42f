"""What every pipeline stage is given: the config, the run folder, the device, the data."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from qpm_zoo import PreprocessConfig

from ..config import FitConfig, ModelSection, TrainSection
from ..nn.dense import DenseClassifier
from ..nn.pretrained import create_backbone

log = logging.getLogger("training")

#: the dense stage's weights, in DIR/dense/
DENSE_WEIGHTS = "weights.safetensors"


class Transformed(Dataset):
    """A dataset of (PIL image, label) seen through one transform (train and statistics passes
    read the same training images through different transforms)."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return self.transform(image), label


def preprocessing_for(model: ModelSection) -> PreprocessConfig:
    """The backbone's timm defaults, overridden by what the config sets explicitly."""
    import timm

    default = PreprocessConfig()
    cfg = timm.models.get_pretrained_cfg(model.backbone)
    base = cfg.to_dict() if cfg is not None else {}
    size = model.input_size
    return PreprocessConfig(
        input_size=(3, size, size),
        interpolation=model.interpolation or base.get("interpolation") or default.interpolation,
        crop_mode=base.get("crop_mode") or default.crop_mode,
        crop_pct=model.crop_pct or base.get("crop_pct") or default.crop_pct,
        mean=tuple(model.mean or base.get("mean") or default.mean),
        std=tuple(model.std or base.get("std") or default.std),
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class RunData:
    """The config's datasets, built on first use (a stage that is reused never reads them)."""

    config: FitConfig
    _splits: Any = field(default=None, repr=False)

    @property
    def splits(self) -> Any:  #: training.data.DataSplits
        if self._splits is None:
            from ..data import build_datasets

            self._splits = build_datasets(self.config.data)
            log.info(
                "data: %s, %d classes, %d train / %d test images",
                self.config.data.name,
                len(self._splits.class_names),
                len(self._splits.train),
                len(self._splits.test),
            )
        return self._splits


@dataclass(frozen=True)
class StageContext:
    """A stage's inputs; a stage writes only under `work_dir(its name)` (and `model/`)."""

    config: FitConfig
    run_dir: Path
    device: torch.device
    preprocessing: PreprocessConfig
    data: RunData

    @classmethod
    def create(cls, config: FitConfig, run_dir: Path) -> StageContext:
        return cls(
            config=config,
            run_dir=Path(run_dir),
            device=torch.device(config.runtime.device),
            preprocessing=preprocessing_for(config.model),
            data=RunData(config),
        )

    @property
    def model_dir(self) -> Path:
        """Where the final checkpoint goes: QPM.from_pretrained(run_dir / 'model')."""
        return self.run_dir / "model"

    @property
    def class_names(self) -> list[str]:
        return self.data.splits.class_names

    def work_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def seed(self, offset: int = 0) -> None:
        """Seed torch, numpy and random (each stage its own offset, so a rerun is the same)."""
        seed = self.config.seed + offset
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def loader(self, split: str, section: TrainSection | None = None) -> DataLoader:
        """`split` ('train' or 'test') batched: shuffled and augmented for training with
        `section`, in order with test-time transforms without one."""
        from ..data import eval_transform, train_transform

        splits = self.data.splits
        dataset = splits.train if split == "train" else splits.test
        train = section is not None
        if train:
            transform = train_transform(self.preprocessing, section.augment)
            batch_size = section.batch_size
        else:
            transform = eval_transform(self.preprocessing)
            batch_size = self.config.runtime.eval_batch_size
        return DataLoader(
            Transformed(dataset, transform),
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,
            num_workers=self.config.runtime.num_workers,
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(self.config.seed),
            persistent_workers=False,
        )

    def new_dense_model(self, pretrained: bool | str | None = None) -> DenseClassifier:
        """The dense model of the config (the backbone's pretrained weights unless told not)."""
        m = self.config.model
        backbone = create_backbone(
            m.backbone,
            m.pretrained if pretrained is None else pretrained,
            m.reduced_strides,
            m.kwargs,
        )
        return DenseClassifier(backbone, len(self.class_names), self.config.dense.dropout)

    def has_dense(self) -> bool:
        return (self.work_dir("dense") / DENSE_WEIGHTS).exists()

    def load_dense(self) -> DenseClassifier:
        """The finished dense model (random init, then its trained weights from the dense stage)."""
        model = self.new_dense_model(pretrained=False)
        model.load_state_dict(load_file(str(self.work_dir("dense") / DENSE_WEIGHTS)))
        return model.to(self.device).eval()


@dataclass(frozen=True)
class StageSummary:
    """A stage's result in numbers, kept in DIR/stages/<name>.json (JSON-safe fields only)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
