"""One SGD step of a training phase: cross entropy + feature diversity loss, under autocast,
through a gradient scaler. The training loop and `bench-train` run this same function.

Torch-only (no qpm-zoo imports), so scripts/gpu_check.py can time it on a bare GPU machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from .fdl import feature_diversity_loss


class StepLosses(NamedTuple):
    loss: torch.Tensor  #: ce + fdl, detached
    cross_entropy: torch.Tensor
    fdl: torch.Tensor
    logits: torch.Tensor  #: [B, C], detached


def fdl_step(
    step: nn.Module,
    fdl_weight: Callable[[], torch.Tensor],
    fdl_beta: float,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> StepLosses:
    """Forward (`step(x)` gives logits and feature maps), both losses, backward, update.
    Nothing here waits for the device: the losses come back as tensors."""
    with autocast():
        out = step(x)
        ce = nn.functional.cross_entropy(out.logits, y)
        fdl = feature_diversity_loss(out.feature_maps, out.logits, fdl_weight(), fdl_beta)
        loss = ce + fdl
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return StepLosses(loss.detach(), ce.detach(), fdl.detach(), out.logits.detach())
