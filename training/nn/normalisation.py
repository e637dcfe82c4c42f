"""Training Q-SENN's feature normalisation (μ, σ) in scale-free coordinates.

The head computes (x − μ) / σ. SGD on σ directly is unstable: its gradient grows like 1/σ², so
with features of small scale one step can drive σ through zero and the logits explode. During
fine-tuning σ = σ₀·exp(s) and μ = μ₀ + σ₀·m are trained through s and m instead (both start at
0 and live in the units of the normalised features); afterwards the plain μ and σ are written
back, so checkpoints are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize


class _RelativeScale(nn.Module):
    def __init__(self, reference: torch.Tensor):
        super().__init__()
        self.register_buffer("reference", reference.detach().clone())

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.reference * torch.exp(s)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return torch.log(value / self.reference)


class _RelativeShift(nn.Module):
    def __init__(self, reference: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("reference", reference.detach().clone())
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.reference + self.scale * m

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return (value - self.reference) / self.scale


@contextmanager
def trainable_normalisation(head: nn.Module) -> Iterator[None]:
    """Within the block, `head.mean` and `head.std` train in scale-free coordinates; on exit they
    are plain parameters again holding the trained values (frozen, as in a checkpoint)."""
    std = head.std.detach().clamp_min(1e-6)
    mean = head.mean.detach()
    parametrize.register_parametrization(head, "std", _RelativeScale(std))
    parametrize.register_parametrization(head, "mean", _RelativeShift(mean, std))
    for p in (head.parametrizations.std.original, head.parametrizations.mean.original):
        p.requires_grad_(True)
    try:
        yield
    finally:
        parametrize.remove_parametrizations(head, "mean", leave_parametrized=True)
        parametrize.remove_parametrizations(head, "std", leave_parametrized=True)
        head.mean.requires_grad_(False)
        head.std.requires_grad_(False)
