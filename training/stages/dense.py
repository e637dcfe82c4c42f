"""Stage `dense` (docs/method.md §1): the dense model trained with the feature diversity loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from safetensors.torch import save_file

from ..nn.frozen import OnTrunkMaps
from ..nn.loops import evaluate_accuracy, train_phase
from ..stage_cache import write_json
from .context import DENSE_WEIGHTS, StageContext, StageSummary

NAME = "dense"
#: what the dense model depends on; a run may reuse another run's dense model only if these agree
SECTIONS = ("seed", "data", "model", "dense")


@dataclass(frozen=True)
class DenseSummary(StageSummary):
    test_accuracy: float
    epochs: int
    #: seconds spent computing the frozen trunk's maps (None: trained on images)
    cached_maps_seconds: float | None = None


def train_dense(ctx: StageContext) -> DenseSummary:
    """Train; DIR/dense/ gets the weights and the per-epoch history (resumes mid-training).
    With a frozen trunk and no augmentation, on its maps computed once (training.nn.frozen)."""
    ctx.seed()
    model = ctx.new_dense_model()
    section = ctx.config.dense
    body = [
        p
        for name, p in model.named_parameters()
        if p.requires_grad and not name.startswith("linear.")
    ]
    groups = [
        {"params": body},
        {"params": list(model.linear.parameters()), "lr": section.classifier_lr},
    ]
    cached = ctx.trains_on_cached_maps(section)
    if cached:
        model.to(ctx.device)
        train_loader, test_loader = ctx.map_loaders(model.backbone, section)
        stepped = OnTrunkMaps(model, model.from_maps)
    else:
        train_loader, test_loader, stepped = ctx.loader("train", section), ctx.loader("test"), model
    work = ctx.work_dir(NAME)
    history = train_phase(
        stepped,
        lambda: model.linear.weight,
        groups,
        section,
        train_loader,
        test_loader,
        ctx.device,
        work,
        NAME,
        eval_every=max(1, section.epochs // 5),
        runtime=ctx.phase_runtime(),
    )
    if history and not cached:
        accuracy = history[-1].test_accuracy
    else:  # the model's own accuracy on images, not on the float16 maps it was trained on
        accuracy = evaluate_accuracy(model, ctx.loader("test"), ctx.device, dist=ctx.dist)
    if ctx.dist.is_main:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(work / DENSE_WEIGHTS))
        write_json(work / "history.json", [asdict(r) for r in history])
        write_json(work / "scale.json", ctx.scale(section))
        (work / "resume.pt").unlink(missing_ok=True)
    ctx.dist.barrier()  # the weights are there before any rank reads them
    return DenseSummary(
        test_accuracy=accuracy,
        epochs=section.epochs,
        cached_maps_seconds=ctx.cached_maps_seconds() if cached else None,
    )
