"""Stage `finetune` (docs/method.md §4): the QPM built from the assignment, fine-tuned, saved."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qpm_zoo.model import QPM

from ..nn.frozen import OnTrunkMaps
from ..nn.loops import evaluate_accuracy, train_phase
from ..stage_cache import write_json
from .assignment import load_assignment, proof_metrics
from .context import StageContext, StageSummary
from .statistics import load_statistics

NAME = "finetune"
SECTIONS = ("finetune",)


@dataclass(frozen=True)
class FinetuneSummary(StageSummary):
    accuracy_before_finetuning: float
    test_accuracy: float
    epochs: int


def finetune(ctx: StageContext, dense_accuracy: float | None) -> FinetuneSummary:
    """Fine-tune the assigned QPM (μ, σ and W frozen); the checkpoint goes to DIR/model."""
    ctx.seed(1)
    dense = ctx.load_dense()
    stats = load_statistics(ctx)
    assignment = load_assignment(ctx)
    selected = assignment.selected
    model = QPM.from_assignment(
        dense.backbone,
        selected_features=selected,
        weight=assignment.weight,
        mean=stats.mean[selected],
        std=stats.std[selected],
        label_names=ctx.class_names,
        k=ctx.config.assignment.k,
        preprocessing=ctx.preprocessing,
        metrics={"dense_accuracy": dense_accuracy, **proof_metrics(assignment)},
        training=ctx.training_record(),
    ).to(ctx.device)
    if ctx.config.model.freeze_backbone:
        model.backbone.freeze_trunk()  # the adapter alone trains (docs/method.md §8)
    section = ctx.config.finetune
    model.head.dropout.p = section.dropout
    before = evaluate_accuracy(
        model, ctx.loader("test"), ctx.device, desc="qpm before fine-tuning", dist=ctx.dist
    )
    cached = ctx.trains_on_cached_maps(section)
    if cached:
        train_loader, test_loader = ctx.map_loaders(model.backbone, section)
        stepped = OnTrunkMaps(model, model.head.forward)
    else:
        train_loader, test_loader, stepped = ctx.loader("train", section), ctx.loader("test"), model
    work = ctx.work_dir(NAME)
    history = train_phase(
        stepped,
        lambda: model.head.weight,
        [{"params": [p for p in model.parameters() if p.requires_grad]}],
        section,
        train_loader,
        test_loader,
        ctx.device,
        work,
        NAME,
        eval_every=max(1, section.epochs // 4),
        runtime=ctx.phase_runtime(),
    )
    if not history:
        accuracy = before
    elif cached:  # the checkpoint's accuracy on images, not on the float16 maps it trained on
        accuracy = evaluate_accuracy(model, ctx.loader("test"), ctx.device, dist=ctx.dist)
    else:
        accuracy = history[-1].test_accuracy
    model.head.dropout.p = 0.0
    model.set_config(model.config.replace(metrics={**model.config.metrics, "accuracy": accuracy}))
    if ctx.dist.is_main:
        model.eval().cpu().save_pretrained(ctx.model_dir)
        write_json(work / "history.json", [asdict(r) for r in history])
        (work / "resume.pt").unlink(missing_ok=True)
    ctx.dist.barrier()
    return FinetuneSummary(
        accuracy_before_finetuning=before, test_accuracy=accuracy, epochs=section.epochs
    )
