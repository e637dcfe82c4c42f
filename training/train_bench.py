"""Images per second of our training step beside a plain timm training step (`bench-train`).

Ours: the dense model (timm backbone → feature maps → average pool → dropout → linear) with
cross entropy + the feature diversity loss, through the training loop's own step function.
Plain: the same timm model with its own pooling and classifier and cross entropy only. Same
batch, optimiser, precision and memory format; the two are timed in alternating rounds so a
shared machine slows both alike, and each variant's median round counts. On a GPU the clock
is wall time (after synchronising); on a CPU it is this process's CPU time, which other jobs
on a shared machine do not inflate (so CPU images/s are per CPU-second of all its threads).

Under torchrun each variant is timed twice: by rank 0 alone (the others wait), then by every
rank with DistributedDataParallel; the scaling is the N-process images/s over N times the
1-process images/s. Torch and timm only (no qpm-zoo imports), for scripts/gpu_check.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from .nn.dense import DenseClassifier
from .nn.step import fdl_step
from .runtime.precision import Precision

#: the paper's FDL weight (training.config.TrainSection.fdl_weight)
FDL_BETA = 0.196


@dataclass(frozen=True)
class BenchSettings:
    backbone: str = "resnet18"
    image_size: int = 224
    batch: int = 16
    steps: int = 10  #: timed steps per round
    rounds: int = 3
    warmup: int = 3
    precision: str = "fp32"
    channels_last: bool = False
    num_classes: int = 200  #: CUB-2011's


@dataclass(frozen=True)
class BenchRow:
    variant: str  #: "ours" (CE + FDL with feature maps) or "plain" (timm, CE only)
    processes: int
    images_per_s: float  #: all processes together
    step_ms: float  #: median wall time of one step


class _Maps(nn.Module):
    """A timm model's feature maps (what qpm_zoo.backbone.Backbone computes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class _Ours(nn.Module):
    def __init__(self, dense: DenseClassifier):
        super().__init__()
        self.dense = dense

    def forward(self, x: torch.Tensor):
        return self.dense.forward_all(x)


class _PlainOutput(nn.Module):
    """A plain model's logits in the step function's shape (no maps: FDL weight 0)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        logits = self.model(x)
        return _Out(logits, logits.new_zeros((logits.shape[0], 1, 1, 1)))


class _Out(tuple):
    def __new__(cls, logits: torch.Tensor, feature_maps: torch.Tensor):
        return super().__new__(cls, (logits, feature_maps))

    @property
    def logits(self) -> torch.Tensor:
        return self[0]

    @property
    def feature_maps(self) -> torch.Tensor:
        return self[1]


def _variant(
    name: str, settings: BenchSettings, device: torch.device
) -> tuple[nn.Module, Callable[[], torch.Tensor], float]:
    """(module to step, FDL weight, FDL beta) of one variant."""
    import timm

    if name == "ours":
        timm_model = timm.create_model(settings.backbone, num_classes=0, global_pool="")
        dense = DenseClassifier(_Maps(timm_model), settings.num_classes).to(device)
        return _Ours(dense), lambda: dense.linear.weight, FDL_BETA
    plain = timm.create_model(settings.backbone, num_classes=settings.num_classes).to(device)
    return _PlainOutput(plain), lambda: torch.zeros(()), 0.0


def _time_steps(
    name: str,
    settings: BenchSettings,
    device: torch.device,
    distributed: bool,
) -> Callable[[], float]:
    """A function timing `settings.steps` steps of one variant (seconds per step)."""
    torch.manual_seed(0)
    module, weight, beta = _variant(name, settings, device)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    module.to(memory_format=memory_format)
    step: nn.Module = module
    if distributed:
        step = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    precision = Precision(settings.precision, device.type)  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    scaler = precision.grad_scaler()
    size = settings.image_size
    x = torch.randn(settings.batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, settings.num_classes, (settings.batch,), device=device)
    module.train()

    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def run(count: int) -> float:
        if count == 0:
            return 0.0
        _sync(device)
        started = clock()
        for _ in range(count):
            fdl_step(step, weight, beta, optimizer, scaler, x, y, precision.autocast)
        _sync(device)
        return max(clock() - started, 1e-9) / count  # a coarse clock may read 0

    run(settings.warmup)
    return lambda: run(settings.steps)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(
    settings: BenchSettings, device: torch.device, processes: int, distributed: bool
) -> list[BenchRow]:
    timers = {name: _time_steps(name, settings, device, distributed) for name in ("plain", "ours")}
    seconds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(settings.rounds):
        for name, timer in timers.items():
            if distributed:
                torch_dist.barrier()
            seconds[name].append(timer())
    rows = []
    for name, values in seconds.items():
        step_s = statistics.median(values)
        rows.append(BenchRow(name, processes, settings.batch * processes / step_s, step_s * 1e3))
    return rows


def run_bench(settings: BenchSettings, device: torch.device) -> list[BenchRow]:
    """The rows of one launch: 1 process, and under torchrun also all of them with DDP."""
    world = torch_dist.get_world_size() if torch_dist.is_initialized() else 1
    rank = torch_dist.get_rank() if torch_dist.is_initialized() else 0
    rows = _measure(settings, device, 1, distributed=False) if rank == 0 else []
    if world > 1:
        torch_dist.barrier()  # the other ranks waited: rank 0 was timed alone
        rows += _measure(settings, device, world, distributed=True)
    return rows


def summarise(rows: list[BenchRow]) -> list[dict]:
    """The rows as a table: images/s of each variant, ours / plain, and the scaling."""
    by_key = {(r.variant, r.processes): r for r in rows}
    out = []
    for (variant, processes), row in sorted(by_key.items(), key=lambda kv: kv[0][1]):
        if variant != "ours":
            continue
        plain = by_key[("plain", processes)]
        single = by_key[("ours", 1)]
        entry = {
            **asdict(row),
            "plain_images_per_s": plain.images_per_s,
            "ratio": row.images_per_s / plain.images_per_s,
            "scaling": row.images_per_s / (processes * single.images_per_s),
        }
        out.append(entry)
    return out
