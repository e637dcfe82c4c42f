"""Throughput of torch eager vs onnxruntime (CPU) on a checkpoint, and the QPM head's share.

    python -m export bench MODEL_DIR [--batch 1 8] [--threads 2] [--repeats 5] [--json]

Both backends get the same thread count and passive waiting (OMP_WAIT_POLICY=PASSIVE for torch,
no spinning for onnxruntime), and are measured in alternation, so that load from other work
on the machine hits both alike; the table reports medians over the repeats, and the ratio is
the median of the per-repeat ratios. The head's share is the time of the head alone (on real
backbone maps of the same batch) over the full torch forward: what explanations cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qpm_zoo.errors import UsageError
from qpm_zoo.formatting import format_table, print_json

from .steps import Steps


@dataclass(frozen=True)
class BenchRow:
    batch: int
    torch_img_s: float  #: images per second, torch eager under inference_mode
    ort_img_s: float  #: images per second, onnxruntime CPU
    ratio: float  #: onnxruntime / torch throughput (median of per-repeat ratios)
    head_share: float  #: time of the QPM head / time of the full torch forward
    torch_ms: float  #: median milliseconds per batch
    ort_ms: float
    head_ms: float


@dataclass(frozen=True)
class BenchSettings:
    model: str
    backbone: str
    input_size: tuple[int, int, int]
    num_classes: int
    n_features: int
    onnx_dtype: str
    threads: int
    repeats: int
    min_time: float
    ort_providers: list[str]
    ort_optimization: str


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_dir", metavar="MODEL_DIR", type=Path, help="checkpoint folder with model.onnx"
    )
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--threads", type=int, default=2, help="threads for both backends (default 2)")
    p.add_argument(
        "--repeats", type=int, default=5, help="measurements per backend and batch (default 5)"
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=1.0,
        help="seconds each measurement runs at least (whole batches; default 1.0)",
    )
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed runs per backend and batch (default 2)"
    )
    p.add_argument("--json", action="store_true", help="print settings and rows as JSON")


def run(args: argparse.Namespace) -> int:
    if args.threads < 1 or args.repeats < 1:
        raise UsageError("--threads and --repeats must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must not be negative")
    if not args.batch or min(args.batch) < 1:
        raise UsageError("--batch sizes must be positive")
    if not args.min_time >= 0:
        raise UsageError("--min-time must not be negative")
    settings, rows = benchmark(
        args.model_dir,
        args.batch,
        threads=args.threads,
        repeats=args.repeats,
        min_time=args.min_time,
        warmup=args.warmup,
    )
    if args.json:
        print_json(
            {
                "settings": dataclasses.asdict(settings),
                "rows": [dataclasses.asdict(r) for r in rows],
            }
        )
        return 0
    print(format_report(settings, rows))
    return 0


def format_report(settings: BenchSettings, rows: list[BenchRow]) -> str:
    """The benchmark's result for people: the settings in a line, then one row per batch size."""
    heading = (
        f"{settings.backbone} {settings.input_size[1]}x{settings.input_size[2]}, {settings.num_classes} classes, "
        f"n={settings.n_features}; {settings.threads} threads each; onnxruntime {settings.ort_providers} "
        f"({settings.ort_optimization}, {settings.onnx_dtype}); medians of {settings.repeats} repeats"
    )
    table = format_table(
        [
            "batch",
            "torch img/s",
            "ort img/s",
            "ort/torch",
            "head share",
            "torch ms",
            "ort ms",
            "head ms",
        ],
        [
            (
                r.batch,
                r.torch_img_s,
                r.ort_img_s,
                r.ratio,
                f"{100 * r.head_share:.3f} %",
                r.torch_ms,
                r.ort_ms,
                r.head_ms,
            )
            for r in rows
        ],
        floatfmt=".3g",
    )
    return f"{heading}\n{table}\ntarget: ort/torch >= 1.5 on the CPU, head share < 1 %"


def seconds_per_call(fn: Callable[[], Any], min_time: float) -> float:
    """Seconds per call of `fn`, calling it until `min_time` has passed (at least once)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def benchmark(
    model_dir: str | Path,
    batches: list[int],
    threads: int = 2,
    repeats: int = 5,
    min_time: float = 1.0,
    warmup: int = 2,
) -> tuple[BenchSettings, list[BenchRow]]:
    """Measure both backends on random normalised inputs of each batch size."""
    # Must precede torch's OpenMP start-up; busy-waiting threads starve each other on a shared
    # machine. (No effect if torch was imported already, e.g. inside a test process.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from tqdm import tqdm

    from qpm_zoo.model import QPM
    from qpm_zoo.onnx_model import QPMOnnx, import_onnxruntime

    steps = Steps()
    ort = import_onnxruntime()
    steps(f"loading {model_dir} (PyTorch and ONNX)")
    torch.set_num_threads(threads)
    model = QPM.from_pretrained(model_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    runtime = QPMOnnx.from_pretrained(
        model_dir, providers=["CPUExecutionProvider"], session_options=options
    )
    steps.done()

    config = model.config
    _, height, width = config.preprocessing.input_size
    rng = np.random.default_rng(0)
    rows = []
    progress = tqdm(total=len(batches) * repeats, desc="measuring", unit="repeat", file=sys.stderr)
    for b in batches:
        pixels = rng.standard_normal((b, 3, height, width)).astype(np.float32)
        tensor = torch.from_numpy(pixels)
        with torch.inference_mode():
            maps = model.backbone(tensor)

        def torch_forward(tensor: torch.Tensor = tensor) -> None:
            with torch.inference_mode():
                model.forward_all(tensor)

        def head_only(maps: torch.Tensor = maps) -> None:
            with torch.inference_mode():
                model.head(maps)

        def ort_forward(pixels: np.ndarray = pixels) -> None:
            runtime.forward_arrays(pixels)

        for _ in range(warmup):
            torch_forward(), ort_forward(), head_only()
        t_torch, t_ort, t_head = [], [], []
        for _ in range(repeats):
            t_torch.append(seconds_per_call(torch_forward, min_time))
            t_ort.append(seconds_per_call(ort_forward, min_time))
            t_head.append(seconds_per_call(head_only, min(min_time, 0.2)))
            progress.update()
        torch_s, ort_s, head_s = (statistics.median(t) for t in (t_torch, t_ort, t_head))
        rows.append(
            BenchRow(
                batch=b,
                torch_img_s=b / torch_s,
                ort_img_s=b / ort_s,
                ratio=statistics.median(t / o for t, o in zip(t_torch, t_ort)),
                head_share=head_s / torch_s,
                torch_ms=1000 * torch_s,
                ort_ms=1000 * ort_s,
                head_ms=1000 * head_s,
            )
        )
    progress.close()
    settings = BenchSettings(
        model=str(model_dir),
        backbone=config.backbone.name
        + (" (reduced strides)" if config.backbone.reduced_strides else ""),
        input_size=tuple(config.preprocessing.input_size),
        num_classes=config.num_classes,
        n_features=config.n_features,
        onnx_dtype=runtime.record.dtype,
        threads=threads,
        repeats=repeats,
        min_time=min_time,
        ort_providers=runtime.providers,
        ort_optimization=str(options.graph_optimization_level).rsplit(".", 1)[-1],
    )
    return settings, rows
