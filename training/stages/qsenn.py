"""Stage `qsenn` (docs/method.md §5): select n features once, then per round fit and quantise the
sparse layer on the current features and fine-tune with it frozen (μ, σ trainable)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qpm_zoo.model import QPM

from ..config import FinetuneSection
from ..logs import progress
from ..nn.loops import evaluate_accuracy, train_phase
from ..nn.normalisation import trainable_normalisation
from ..stage_cache import write_json
from .context import StageContext, StageSummary

log = logging.getLogger("training")

NAME = "qsenn"
SECTIONS = ("model_type", "assignment", "qsenn", "finetune")
#: written into a round's folder when it finished: {"selected": [...], "summary": {...}}
ROUND_DONE = "done.json"


@dataclass(frozen=True)
class QSENNRound(StageSummary):
    round: int
    layer_train_accuracy: float
    quantised_test_accuracy: float
    test_accuracy: float
    nonzeros: int
    magnitude: float


@dataclass(frozen=True)
class QSENNSummary(StageSummary):
    test_accuracy: float
    rounds: list[dict]  #: QSENNRound.to_dict() of each round


@torch.inference_mode()
def _pooled_features(
    ctx: StageContext, backbone: torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """All pooled backbone features [N, F] of the training set (test-time transforms), in
    dataset order; under torchrun each rank computes its share and rank 0 gets them all
    (the other ranks get None: they do not fit the layers)."""
    backbone.eval()
    features, labels = [], []
    for x, y in progress(ctx.loader("train"), "features"):
        features.append(backbone(x.to(ctx.device)).mean(dim=(2, 3)).float().cpu())
        labels.append(y)
    mine = (torch.cat(features), torch.cat(labels))
    shares = ctx.dist.gather(mine)
    if shares is None:
        return None
    n = sum(len(share[1]) for share in shares)
    X = torch.empty((n, mine[0].shape[1]), dtype=mine[0].dtype)
    y = torch.empty(n, dtype=mine[1].dtype)
    for rank, (Xr, yr) in enumerate(shares):  # rank r holds items r, r + world, ...
        X[rank :: ctx.dist.world_size], y[rank :: ctx.dist.world_size] = Xr, yr
    return X, y


def _round_section(ctx: StageContext, r: int) -> FinetuneSection:
    """Round 1 fine-tunes as `finetune` says; later rounds shorter, with a decaying rate."""
    q, finetune = ctx.config.qsenn, ctx.config.finetune
    if r == 1:
        return finetune
    return finetune.replace(epochs=q.later_epochs, lr=finetune.lr * q.lr_decay ** (r - 2))


def _finished_round(folder: Path) -> tuple[list[int], QSENNRound] | None:
    done = folder / ROUND_DONE
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    return record["selected"], QSENNRound.from_dict(record["summary"])


def _fit_round(
    ctx: StageContext,
    pooled: tuple[torch.Tensor, torch.Tensor],
    selected: list[int] | None,
) -> tuple[list[int], Any, torch.Tensor, torch.Tensor]:
    """The round's features (selected in round 1) and its quantised sparse layer, fitted on
    the pooled training features; with μ and σ of those features."""
    from ..qsenn import quantised_layer, select_features

    q, a = ctx.config.qsenn, ctx.config.assignment
    num_classes = len(ctx.class_names)
    X, y = pooled
    mean, std = X.mean(dim=0), X.std(dim=0, unbiased=False).clamp_min(1e-6)
    if selected is None:
        order = select_features(
            (X - mean) / std,
            y,
            num_classes,
            a.n,
            alpha=q.selection_alpha,
            steps=q.path_steps,
            epsilon=q.epsilon,
        )
        selected = sorted(order)
    Z = (X[:, selected] - mean[selected]) / std[selected]
    layer = quantised_layer(
        Z.double(),
        y,
        num_classes,
        a.k,
        alpha=q.layer_alpha,
        steps=q.path_steps,
        epsilon=q.epsilon,
    )
    return selected, layer, mean, std


def train_qsenn(ctx: StageContext, dense_accuracy: float | None) -> QSENNSummary:
    """Every round (a round finished before an interruption is reused); the last round's model
    goes to DIR/model."""
    q, a = ctx.config.qsenn, ctx.config.assignment
    work = ctx.work_dir(NAME)
    backbone = ctx.load_dense().backbone
    selected: list[int] | None = None
    rounds: list[QSENNRound] = []
    model = None
    for r in range(1, q.rounds + 1):
        folder = work / f"round{r}"
        finished = _finished_round(folder)
        if finished is not None:
            model = QPM.from_pretrained(folder).to(ctx.device)
            backbone = model.backbone
            selected = finished[0]
            rounds.append(finished[1])
            log.info("q-senn round %d: reused", r)
            continue
        ctx.seed(10 + r)
        pooled = _pooled_features(ctx, backbone)
        fitted = ctx.dist.on_main(lambda: _fit_round(ctx, pooled, selected))  # noqa: B023
        selected, layer, mean, std = fitted
        model = QPM.from_assignment(
            backbone,
            selected_features=selected,
            weight=layer.weight,
            bias=layer.bias,
            mean=mean[selected].numpy(),
            std=std[selected].numpy(),
            label_names=ctx.class_names,
            k=a.k,
            model_type="qsenn",
            preprocessing=ctx.preprocessing,
            training=ctx.training_record(),
        ).to(ctx.device)
        if ctx.config.model.freeze_backbone:
            model.backbone.freeze_trunk()  # the adapter trains, on images (no cached maps here)
        section = _round_section(ctx, r)
        model.head.dropout.p = section.dropout
        before = evaluate_accuracy(
            model, ctx.loader("test"), ctx.device, desc=f"q-senn round {r}", dist=ctx.dist
        )
        with trainable_normalisation(model.head):  # Q-SENN trains μ and σ too
            history = train_phase(
                model,
                lambda: model.head.weight,  # noqa: B023 - called within this iteration
                [{"params": [p for p in model.parameters() if p.requires_grad]}],
                section,
                ctx.loader("train", section),
                ctx.loader("test"),
                ctx.device,
                folder,
                f"q-senn round {r}",
                eval_every=max(1, section.epochs),
                runtime=ctx.phase_runtime(),
            )
        model.head.dropout.p = 0.0
        result = QSENNRound(
            round=r,
            layer_train_accuracy=layer.dense_accuracy,
            quantised_test_accuracy=before,
            test_accuracy=history[-1].test_accuracy if history else before,
            nonzeros=int(np.count_nonzero(layer.weight)),
            magnitude=layer.magnitude,
        )
        log.info(
            "q-senn round %d: quantised layer %.4f → fine-tuned %.4f test accuracy",
            r,
            before,
            result.test_accuracy,
        )
        if ctx.dist.is_main:
            model.eval().save_pretrained(folder)
            (folder / "resume.pt").unlink(missing_ok=True)
            write_json(folder / ROUND_DONE, {"selected": selected, "summary": result.to_dict()})
        ctx.dist.barrier()
        backbone = model.backbone
        rounds.append(result)
    assert model is not None
    accuracy = rounds[-1].test_accuracy
    model.set_config(
        model.config.replace(metrics={"dense_accuracy": dense_accuracy, "accuracy": accuracy})
    )
    if ctx.dist.is_main:
        model.eval().cpu().save_pretrained(ctx.model_dir)
        write_json(work / "rounds.json", [r.to_dict() for r in rounds])
    ctx.dist.barrier()
    return QSENNSummary(test_accuracy=accuracy, rounds=[r.to_dict() for r in rounds])
