"""SGD training phases with the feature diversity loss, resumable at epoch boundaries.

Dense training and fine-tuning share this loop: the model's `forward_all(x)` returns
(logits, features, feature_maps), and `fdl_weight()` gives the [C, F] matrix the FDL uses (the
dense linear layer, or the frozen QPM assignment over the selected features' maps).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import TrainSection
from ..errors import TrainingDiverged
from ..logs import progress
from .fdl import feature_diversity_loss

log = logging.getLogger("training")


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
    groups: list[dict], section: TrainSection
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    optimizer = torch.optim.SGD(
        groups, lr=section.lr, momentum=section.momentum, weight_decay=section.weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, section.step_size, section.gamma)


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module, loader: Iterable, device: torch.device, desc: str = "test"
) -> float:
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in progress(loader, desc):
            logits = model(x.to(device))
            correct += int((logits.argmax(dim=1).cpu() == y).sum())
            total += len(y)
    finally:
        model.train(was_training)
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
) -> list[EpochRecord]:
    """Run `section.epochs` epochs; after each one the state is saved, so a rerun resumes there."""
    work_dir.mkdir(parents=True, exist_ok=True)
    resume_path = work_dir / "resume.pt"
    optimizer, scheduler = build_optimizer(groups, section)
    history: list[EpochRecord] = []
    start = 0
    if resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history = [EpochRecord(**r) for r in state["history"]]
        start = state["epoch"]
        log.info("%s: resuming after epoch %d of %d", name, start, section.epochs)
    model.to(device)
    for epoch in range(start, section.epochs):
        record = _train_epoch(
            model, fdl_weight, optimizer, section, train_loader, device, name, epoch
        )
        scheduler.step()
        last = epoch + 1 == section.epochs
        if test_loader is not None and (last or (epoch + 1) % eval_every == 0):
            record.test_accuracy = evaluate_accuracy(
                model, test_loader, device, desc=f"{name} test"
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
        _save_state(
            resume_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "history": [asdict(r) for r in history],
            },
        )
    return history


def _train_epoch(
    model: nn.Module,
    fdl_weight: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    section: TrainSection,
    loader: Iterable,
    device: torch.device,
    name: str,
    epoch: int,
) -> EpochRecord:
    model.train()
    started = time.perf_counter()
    sums = {"loss": 0.0, "ce": 0.0, "fdl": 0.0}
    correct = seen = 0
    bar = progress(loader, f"{name} {epoch + 1}/{section.epochs}")
    for x, y in bar:
        x, y = x.to(device), y.to(device)
        out = model.forward_all(x)
        ce = nn.functional.cross_entropy(out.logits, y)
        fdl = feature_diversity_loss(out.feature_maps, out.logits, fdl_weight(), section.fdl_weight)
        loss = ce + fdl
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(
                f"{name}: the loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = len(y)
        seen += b
        sums["loss"] += loss.item() * b
        sums["ce"] += ce.item() * b
        sums["fdl"] += fdl.item() * b
        correct += int((out.logits.argmax(dim=1) == y).sum())
        bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", acc=f"{correct / seen:.3f}")
    seen = max(seen, 1)
    return EpochRecord(
        epoch=epoch + 1,
        lr=optimizer.param_groups[0]["lr"],
        loss=sums["loss"] / seen,
        cross_entropy=sums["ce"] / seen,
        fdl=sums["fdl"] / seen,
        train_accuracy=correct / seen,
        test_accuracy=None,
        seconds=time.perf_counter() - started,
    )
