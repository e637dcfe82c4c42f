"""The interpretable layer of QPM and Q-SENN (docs/method.md §4-§5).

logits = W · ((x[sel] − μ) / max(σ, 1e-6)) + b, where x is the average-pooled feature maps,
`sel` the n selected channels, W the class-feature assignment ({0,1} for QPM; signed and
quantised for Q-SENN) and b the bias (Q-SENN only). W and b are frozen buffers; μ and σ are
parameters so that Q-SENN's fine-tuning can train them (QPM keeps them frozen).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .explain import ModelOutput

STD_FLOOR = 1e-6


class InterpretableHead(nn.Module):
    def __init__(
        self,
        selection: np.ndarray | torch.Tensor,
        weight: np.ndarray | torch.Tensor,
        mean: np.ndarray | torch.Tensor | None = None,
        std: np.ndarray | torch.Tensor | None = None,
        bias: np.ndarray | torch.Tensor | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        selection = torch.as_tensor(np.asarray(selection), dtype=torch.long)
        weight = torch.as_tensor(np.asarray(weight, dtype=np.float32))
        n = selection.numel()
        if weight.ndim != 2 or weight.shape[1] != n:
            raise ConfigError(f"weight must be [classes, {n}], got {tuple(weight.shape)}")
        mean = (
            torch.zeros(n) if mean is None else torch.as_tensor(np.asarray(mean, dtype=np.float32))
        )
        std = torch.ones(n) if std is None else torch.as_tensor(np.asarray(std, dtype=np.float32))
        if mean.shape != (n,) or std.shape != (n,):
            raise ConfigError(
                f"mean and std must have {n} entries, got {tuple(mean.shape)}, {tuple(std.shape)}"
            )
        self.register_buffer("selection", selection)
        self.register_buffer("weight", weight)
        if bias is not None:
            self.register_buffer("bias", torch.as_tensor(np.asarray(bias, dtype=np.float32)))
        else:
            self.bias = None
        self.mean = nn.Parameter(mean.clone(), requires_grad=False)
        self.std = nn.Parameter(std.clone(), requires_grad=False)
        self.dropout = nn.Dropout(dropout)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def num_features(self) -> int:
        return self.selection.numel()

    def normalise(self, pooled: torch.Tensor) -> torch.Tensor:
        return (pooled - self.mean) / torch.clamp(self.std, min=STD_FLOOR)

    def forward(self, feature_maps: torch.Tensor) -> ModelOutput:
        """All backbone maps [B, F, h, w] → logits, normalised features and the selected maps."""
        selected = feature_maps.index_select(1, self.selection)
        features = self.normalise(selected.mean(dim=(2, 3)))
        logits = torch.nn.functional.linear(self.dropout(features), self.weight, self.bias)
        return ModelOutput(logits, features, selected)
