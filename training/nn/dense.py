"""The dense model QPM starts from: backbone → average pool → dropout → linear (docs/method.md §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

if TYPE_CHECKING:  # torch-only at run time: scripts/gpu_check.py benchmarks it without our deps
    from qpm_zoo.backbone import Backbone


class DenseOutput(NamedTuple):
    logits: torch.Tensor  #: [B, C]
    features: torch.Tensor  #: [B, F] pooled features
    feature_maps: torch.Tensor  #: [B, F, h, w]


class DenseClassifier(nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(backbone.num_features, num_classes)

    def forward_all(self, x: torch.Tensor) -> DenseOutput:
        return self.from_maps(self.backbone(x))

    def from_maps(self, maps: torch.Tensor) -> DenseOutput:
        """The outputs for the backbone's maps [B, F, h, w]: pooled, dropout, linear."""
        features = maps.mean(dim=(2, 3))
        return DenseOutput(self.linear(self.dropout(features)), features, maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits
