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
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from qpm_zoo import PreprocessConfig

from ..config import SCALE_KEY, FitConfig, ModelSection, TrainSection
from ..nn.dense import DenseClassifier
from ..nn.frozen import MapLoader, TrunkMaps, compute_trunk_maps
from ..nn.loops import PhaseRuntime
from ..nn.pretrained import create_backbone
from ..runtime import Distributed, Precision, default_num_workers, resolve_device
from ..runtime.loading import loader_seed, seed_worker

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


class _Shard(Sampler[int]):
    """This rank's share of an evaluation pass, in order and without padding (unlike
    DistributedSampler, which repeats samples to even the shards out)."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochLoader:
    """A training DataLoader that is reseeded per epoch: `set_epoch(e)` reshuffles (the
    distributed sampler's seed + e) and reseeds the augmentations (the loader's generator)."""

    def __init__(self, loader: DataLoader, sampler: DistributedSampler, seed: int, rank: int):
        self.loader = loader
        self.sampler = sampler
        self.seed = seed
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.loader.generator.manual_seed(loader_seed(self.seed, self.rank, epoch))

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


@dataclass(frozen=True)
class StageContext:
    """A stage's inputs; a stage writes only under `work_dir(its name)` (and `model/`), and
    only on the main process (`dist.is_main`)."""

    config: FitConfig
    run_dir: Path
    device: torch.device
    preprocessing: PreprocessConfig
    data: RunData
    dist: Distributed = field(default_factory=Distributed)
    #: the frozen trunk's maps by split, computed once per process (dense and fine-tuning
    #: train on the same maps: the trunk is frozen, so they are the same)
    _trunk_maps: dict[str, TrunkMaps] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls, config: FitConfig, run_dir: Path, dist: Distributed | None = None
    ) -> StageContext:
        """Resolves the device and precision first: an unusable one fails before any work."""
        dist = dist or Distributed()
        device = resolve_device(config.runtime.device, dist.local_rank)
        Precision(config.runtime.precision, device.type)
        return cls(
            config=config,
            run_dir=Path(run_dir),
            device=device,
            preprocessing=preprocessing_for(config.model),
            data=RunData(config),
            dist=dist,
        )

    @property
    def precision(self) -> Precision:
        return Precision(self.config.runtime.precision, self.device.type)

    @property
    def num_workers(self) -> int:
        workers = self.config.runtime.num_workers
        return default_num_workers(self.dist.world_size) if workers is None else workers

    def scale(self, section: TrainSection) -> dict[str, float | int]:
        """A training phase at this launch's scale: what the log and the checkpoint record."""
        factor = self.dist.world_size if self.config.runtime.scale_lr else 1
        record: dict[str, float | int] = {
            "world_size": self.dist.world_size,
            "batch_size_per_process": section.batch_size,
            "effective_batch_size": section.batch_size * self.dist.world_size,
            "lr": section.lr * factor,
        }
        classifier_lr = getattr(section, "classifier_lr", None)
        if classifier_lr is not None:
            record["classifier_lr"] = classifier_lr * factor
        return record

    def phase_runtime(self) -> PhaseRuntime:
        """How this launch runs an SGD phase (training.nn.loops.train_phase)."""
        r = self.config.runtime
        return PhaseRuntime(
            precision=self.precision,
            channels_last=r.channels_last,
            compile=r.compile,
            dist=self.dist,
            lr_factor=self.dist.world_size if r.scale_lr else 1.0,
        )

    def training_record(self) -> dict:
        """The checkpoint's `training` entry: the recipe and the scale it was trained at."""
        return {
            **self.config.to_dict(),
            SCALE_KEY: {
                "world_size": self.dist.world_size,
                "device": self.device.type,
                "precision": self.config.runtime.precision,
                "dense": self.scale(self.config.dense),
                "finetune": self.scale(self.config.finetune),
            },
        }

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

    def loader(self, split: str, section: TrainSection | None = None) -> DataLoader | EpochLoader:
        """`split` ('train' or 'test') batched. With `section`: this rank's shuffled, augmented
        share (an EpochLoader: call set_epoch); without: this rank's in-order share with
        test-time transforms (all of it in one process)."""
        from ..data import eval_transform, train_transform

        splits = self.data.splits
        dataset = splits.train if split == "train" else splits.test
        on_cuda = self.device.type == "cuda"
        workers = self.num_workers
        options = {
            "num_workers": workers,
            "pin_memory": on_cuda,
            "persistent_workers": on_cuda and workers > 0,
            "worker_init_fn": seed_worker,
        }
        if section is None:
            return DataLoader(
                Transformed(dataset, eval_transform(self.preprocessing)),
                batch_size=self.config.runtime.eval_batch_size,
                sampler=_Shard(self.dist.shard(len(dataset))),
                generator=torch.Generator().manual_seed(self.config.seed),
                **options,
            )
        sampler = DistributedSampler(
            dataset,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.config.seed,
        )
        per_rank = len(sampler)
        loader = DataLoader(
            Transformed(dataset, train_transform(self.preprocessing, section.augment)),
            batch_size=section.batch_size,
            sampler=sampler,
            drop_last=per_rank > section.batch_size,
            generator=torch.Generator().manual_seed(loader_seed(self.config.seed, 0, 0)),
            **options,
        )
        return EpochLoader(loader, sampler, self.config.seed, self.dist.rank)

    def new_dense_model(self, pretrained: bool | str | None = None) -> DenseClassifier:
        """The dense model of the config (the backbone's pretrained weights unless told not),
        its trunk frozen if the config says so."""
        m = self.config.model
        backbone = create_backbone(
            m.backbone,
            m.pretrained if pretrained is None else pretrained,
            m.reduced_strides,
            m.kwargs,
            None if m.adapter is None else m.adapter.to_config(),
        )
        if m.freeze_backbone:
            backbone.freeze_trunk()
        return DenseClassifier(backbone, len(self.class_names), self.config.dense.dropout)

    def trains_on_cached_maps(self, section: TrainSection) -> bool:
        """Whether a phase trains on the frozen trunk's maps computed once: the trunk is frozen
        and the phase has no augmentation (augmented images would need the trunk every step)."""
        return self.config.model.freeze_backbone and section.augment == "none"

    def cached_maps_seconds(self) -> float:
        """How long computing the cached trunk maps took in this process (0 if none were)."""
        return sum(cached.seconds for cached in self._trunk_maps.values())

    def map_loaders(self, backbone: Any, section: TrainSection) -> tuple[MapLoader, MapLoader]:
        """This rank's shuffled training maps and in-order test maps of the frozen trunk
        (training.nn.frozen), computed on first use and kept for later phases."""
        for split in ("train", "test"):
            if split not in self._trunk_maps:
                self._trunk_maps[split] = compute_trunk_maps(
                    backbone, self.loader(split), self.device, f"{split} maps"
                )
        train, test = self._trunk_maps["train"], self._trunk_maps["test"]
        seed = loader_seed(self.config.seed, self.dist.rank, 0)
        return (
            MapLoader(
                train,
                section.batch_size,
                shuffle=True,
                seed=seed,
                drop_last=len(train) > section.batch_size,
            ),
            MapLoader(test, self.config.runtime.eval_batch_size),
        )

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
