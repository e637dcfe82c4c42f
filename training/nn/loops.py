"""SGD training phases with the feature diversity loss, resumable at epoch boundaries.

Dense training and fine-tuning share this loop: the model's `forward_all(x)` returns
(logits, features, feature_maps), and `fdl_weight()` gives the [C, F] matrix the FDL uses (the
dense linear layer, or the frozen QPM assignment over the selected features' maps).

How the loop runs (PhaseRuntime) never changes what it computes: mixed precision (autocast, a
gradient scaler for fp16), channels_last, torch.compile and DistributedDataParallel under
torchrun, where rank 0 alone writes the resume state and every rank resumes from it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import TrainSection
from ..errors import TrainingDiverged
from ..logs import progress
from ..runtime import Distributed, Precision
from .step import fdl_step

log = logging.getLogger("training")

#: steps between the checks that the loss is finite (each check waits for the device)
CHECK_EVERY = 25


@dataclass(frozen=True)
class PhaseRuntime:
    """How a phase runs: precision, memory format, compilation, processes, learning-rate factor."""

    precision: Precision = field(default_factory=lambda: Precision("fp32", "cpu"))
    channels_last: bool = False
    compile: bool = False
    dist: Distributed = field(default_factory=Distributed)
    lr_factor: float = 1.0  #: the number of processes with runtime.scale_lr, else 1


class _ForwardAll(nn.Module):
    """`forward` = the model's `forward_all`: what DDP and torch.compile wrap (DDP synchronises
    gradients only of what runs through a module's forward)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_all(x)


def training_module(model: nn.Module, device: torch.device, runtime: PhaseRuntime) -> nn.Module:
    """The module a phase steps through: `model` on `device` (channels_last if asked), wrapped
    in DDP for several processes and in torch.compile if asked. Its parameters are `model`'s."""
    model.to(device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    module: nn.Module = _ForwardAll(model)
    if runtime.dist.enabled:
        module = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    if runtime.compile:
        module = torch.compile(module)
    return module


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    loss: float
    cross_entropy: float
    fdl: float
    train_accuracy: float
    test_accuracy: float | None
    seconds: float


def build_optimizer(
    groups: list[dict], section: TrainSection, lr_factor: float = 1.0
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    groups = [{**g, "lr": g["lr"] * lr_factor} if "lr" in g else g for g in groups]
    optimizer = torch.optim.SGD(
        groups,
        lr=section.lr * lr_factor,
        momentum=section.momentum,
        weight_decay=section.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, section.step_size, section.gamma)


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    desc: str = "test",
    dist: Distributed | None = None,
) -> float:
    """Accuracy in float32 over `loader`; under torchrun each rank's shard, summed over ranks
    (the shards split the test set without repeats, so this is the whole set's accuracy)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in progress(loader, desc):
            logits = model(x.to(device, non_blocking=True))
            correct += int((logits.argmax(dim=1).cpu() == y).sum())
            total += len(y)
    finally:
        model.train(was_training)
    if dist is not None:
        correct, total = (int(v) for v in dist.sum(np.array([correct, total])))
    return correct / max(total, 1)


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train_phase(
    model: nn.Module,
    fdl_weight: Callable[[], torch.Tensor],
    groups: list[dict],
    section: TrainSection,
    train_loader: Iterable,
    test_loader: Iterable | None,
    device: torch.device,
    work_dir: Path,
    name: str,
    eval_every: int = 1,
    runtime: PhaseRuntime | None = None,
) -> list[EpochRecord]:
    """Run `section.epochs` epochs; after each one the state is saved, so a rerun resumes there
    (under torchrun also with another number of processes)."""
    runtime = runtime or PhaseRuntime()
    dist = runtime.dist
    work_dir.mkdir(parents=True, exist_ok=True)
    resume_path = work_dir / "resume.pt"
    optimizer, scheduler = build_optimizer(groups, section, runtime.lr_factor)
    scaler = runtime.precision.grad_scaler()
    history: list[EpochRecord] = []
    start = 0
    dist.barrier()  # rank 0 may have just written the resume state every rank reads
    if resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        history = [EpochRecord(**r) for r in state["history"]]
        start = state["epoch"]
        log.info("%s: resuming after epoch %d of %d", name, start, section.epochs)
    step = training_module(model, device, runtime)
    log.info(
        "%s: %d process(es) on %s, %s%s, batch %d per process (effective %d), lr %.3g",
        name,
        dist.world_size,
        device,
        runtime.precision.name,
        ", channels_last" if runtime.channels_last else "",
        section.batch_size,
        section.batch_size * dist.world_size,
        optimizer.param_groups[0]["lr"],
    )
    for epoch in range(start, section.epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        record = _train_epoch(
            step,
            model,
            fdl_weight,
            optimizer,
            scaler,
            section,
            train_loader,
            device,
            name,
            epoch,
            runtime,
        )
        scheduler.step()
        last = epoch + 1 == section.epochs
        if test_loader is not None and (last or (epoch + 1) % eval_every == 0):
            record.test_accuracy = evaluate_accuracy(
                model, test_loader, device, desc=f"{name} test", dist=dist
            )
        history.append(record)
        log.info(
            "%s epoch %d/%d: loss %.4f (ce %.4f, fdl %.4f), train acc %.4f%s, lr %.2e, %.1fs",
            name,
            epoch + 1,
            section.epochs,
            record.loss,
            record.cross_entropy,
            record.fdl,
            record.train_accuracy,
            "" if record.test_accuracy is None else f", test acc {record.test_accuracy:.4f}",
            record.lr,
            record.seconds,
        )
        if dist.is_main:
            _save_state(
                resume_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "epoch": epoch + 1,
                    "history": [asdict(r) for r in history],
                },
            )
    model.to(memory_format=torch.contiguous_format)
    return history


def _train_epoch(
    step: nn.Module,
    model: nn.Module,
    fdl_weight: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    section: TrainSection,
    loader: Iterable,
    device: torch.device,
    name: str,
    epoch: int,
    runtime: PhaseRuntime,
) -> EpochRecord:
    model.train()
    started = time.perf_counter()
    # summed on the device (no wait per step): loss, ce, fdl, correct, seen
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    memory_format = torch.channels_last if runtime.channels_last else torch.preserve_format
    bar = progress(loader, f"{name} {epoch + 1}/{section.epochs}")
    for i, (x, y) in enumerate(bar):
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        losses = fdl_step(
            step,
            fdl_weight,
            section.fdl_weight,
            optimizer,
            scaler,
            x,
            y,
            runtime.precision.autocast,
        )
        b = len(y)
        correct = (losses.logits.argmax(dim=1) == y).sum()
        parts = (losses.loss * b, losses.cross_entropy * b, losses.fdl * b, correct)
        sums[:4] += torch.stack([p.to(torch.float64) for p in parts])
        sums[4] += b
        if (i + 1) % CHECK_EVERY == 0:
            _check_finite(sums, name, epoch)
            seen = max(float(sums[4]), 1.0)
            bar.set_postfix(loss=f"{float(sums[0]) / seen:.3f}", acc=f"{float(sums[3]) / seen:.3f}")
    _check_finite(sums, name, epoch)
    total, ce_sum, fdl_sum, correct_sum, seen = (
        float(v) for v in runtime.dist.sum(sums.cpu().numpy())
    )
    seen = max(seen, 1.0)
    return EpochRecord(
        epoch=epoch + 1,
        lr=optimizer.param_groups[0]["lr"],
        loss=total / seen,
        cross_entropy=ce_sum / seen,
        fdl=fdl_sum / seen,
        train_accuracy=correct_sum / seen,
        test_accuracy=None,
        seconds=time.perf_counter() - started,
    )


def _check_finite(sums: torch.Tensor, name: str, epoch: int) -> None:
    loss = float(sums[0])
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"{name}: the loss became {loss} in epoch {epoch + 1}; lower the learning rate"
        )
