"""Training an adapter on a frozen trunk's maps, computed once (docs/method.md §8).

With the timm model frozen, its maps of an image never change; a phase without augmentation
therefore runs the trunk once over the training (and test) images, keeps the maps in memory as
float16 ([N, D, h, w]: N·D·h·w·2 bytes, logged), and then trains the adapter and the
classifier on them: an epoch costs the adapter's forward and backward, not the backbone's.
The loss, the optimiser and the loop are train_phase's, unchanged; only the inputs are maps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..logs import progress

log = logging.getLogger("training")

#: the cache's precision: half the memory of float32; the maps' rounding (relative 5e-4) is far
#: below what training changes (DINO-QPM stores its precomputed maps in float16 as well)
CACHE_DTYPE = torch.float16


@dataclass(frozen=True)
class TrunkMaps:
    """The frozen trunk's maps of a split, in order, with their labels (on the CPU)."""

    maps: torch.Tensor  #: [N, D, h, w], CACHE_DTYPE
    labels: torch.Tensor  #: [N]
    seconds: float  #: how long computing them took

    @property
    def nbytes(self) -> int:
        return self.maps.numel() * self.maps.element_size()

    def __len__(self) -> int:
        return len(self.labels)


@torch.inference_mode()
def compute_trunk_maps(
    backbone: nn.Module, loader: Iterable, device: torch.device, desc: str
) -> TrunkMaps:
    """`backbone.trunk_maps` of every batch of `loader` (eval mode, no augmentation)."""
    was_training = backbone.training
    backbone.eval()
    started = time.perf_counter()
    maps, labels = [], []
    try:
        for x, y in progress(loader, desc):
            maps.append(backbone.trunk_maps(x.to(device, non_blocking=True)).to("cpu", CACHE_DTYPE))
            labels.append(y)
    finally:
        backbone.train(was_training)
    cached = TrunkMaps(torch.cat(maps), torch.cat(labels), time.perf_counter() - started)
    log.info(
        "%s: %d maps %s cached in %.1f s (%.1f MB, %s)",
        desc,
        len(cached),
        list(cached.maps.shape[1:]),
        cached.seconds,
        cached.nbytes / 1e6,
        str(CACHE_DTYPE).removeprefix("torch."),
    )
    return cached


class MapLoader:
    """Batches of cached maps (as float32) and labels: shuffled with `shuffle`, reshuffled by
    `set_epoch(e)` from `seed + e` (so a resumed phase sees the same order), like EpochLoader."""

    def __init__(
        self,
        cached: TrunkMaps,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.cached = cached
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.cached), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.cached)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.cached.maps[index].float(), self.cached.labels[index]


class OnTrunkMaps(nn.Module):
    """A model whose inputs are already its frozen trunk's maps: `forward_all(maps)` is the
    model's `forward_all(images)` with the trunk's work done (its backbone's adapter, then
    `read`: the dense classifier's pooling and linear layer, or the QPM head)."""

    def __init__(self, model: nn.Module, read: Callable[[torch.Tensor], Any]):
        super().__init__()
        self.model = model
        self.read = read  # a function, not a module: the model's own parts are `model`'s

    def forward_all(self, maps: torch.Tensor) -> Any:
        return self.read(self.model.backbone.adapt(maps))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.forward_all(maps).logits
