"""Speed of the ONNX exports vs torch eager on a checkpoint, and what `predict` adds on top.

    python -m export bench MODEL_DIR [--batch 1 8] [--threads 2] [--repeats 5] [--json]
    python -m export bench --random resnet50 --input-size 224     (random weights, for speed)

Both backends get the same thread count and passive waiting (OMP_WAIT_POLICY=PASSIVE for torch,
no spinning for onnxruntime), and are measured in alternation, so that load from other work
on the machine hits them alike; the table reports medians over the repeats, and each ratio is
the median of the per-repeat ratios. Rows: the float32 export and, when the checkpoint has it,
the int8 variant, each vs torch float32 eager; the head's share is the time of the head alone
(on real backbone maps) over the full torch forward: what explanations cost. The pipeline line
compares the whole `predict` on image files (decode, preprocess, run, explain, with the next
batch prepared while one runs) with the bare session run on the same batches.

torch runs the checkpoint as it is (every channel of the backbone); the export is what
`python -m export onnx` wrote, which for ResNets computes only the channels the head reads
(export/pruning.py; `--all-channels` exports the whole last layer, for comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qpm_zoo.errors import UsageError
from qpm_zoo.formatting import format_table, print_json

from .quantize import cpu_has_vnni
from .steps import Steps

#: The targets of issue 15, printed under the table.
TARGETS = "targets: ort/torch >= 1.5, int8/torch >= 2.5, predict overhead <= 15 % at batch 8"
PIPELINE_IMAGES = 64


@dataclass(frozen=True)
class BenchRow:
    batch: int
    torch_img_s: float  #: images per second, torch eager under inference_mode
    ort_img_s: float  #: images per second, onnxruntime CPU, float32 export
    ratio: float  #: onnxruntime / torch throughput (median of per-repeat ratios)
    head_share: float  #: time of the QPM head / time of the full torch forward
    torch_ms: float  #: median milliseconds per batch
    ort_ms: float
    head_ms: float
    int8_img_s: float | None = None  #: the int8 variant, when the checkpoint has one
    int8_ratio: float | None = None
    int8_ms: float | None = None


@dataclass(frozen=True)
class PipelineRow:
    """`predict(files, batch_size=batch)` vs the bare session run on the same batches."""

    batch: int
    images: int
    predict_ms: float  #: median milliseconds per image, whole predict
    session_ms: float  #: median milliseconds per image, session run only
    overhead: float  #: predict / session − 1 (median of per-repeat values)


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
    variants: list[str] = dataclasses.field(default_factory=list)
    #: whether the CPU has 8-bit dot products (VNNI/AMX); without them int8 gains little speed
    cpu_vnni: bool | None = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        type=Path,
        nargs="?",
        help="checkpoint folder with model.onnx (and model.int8.onnx, if made)",
    )
    p.add_argument(
        "--random",
        metavar="BACKBONE",
        help="instead of MODEL_DIR: a QPM on this timm backbone with random weights (200 classes, "
        "n=50, k=5), exported to float32 and int8 in a temporary folder",
    )
    p.add_argument(
        "--input-size", type=int, default=224, help="with --random: image size (default 224)"
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
    p.add_argument(
        "--no-pipeline", action="store_true", help="skip the predict-vs-session measurement"
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
    if (args.model_dir is None) == (args.random is None):
        raise UsageError("give MODEL_DIR or --random BACKBONE (one of them)")
    if args.input_size < 16:
        raise UsageError("--input-size must be at least 16")
    with tempfile.TemporaryDirectory(prefix="qpm-bench-") as tmp:
        model_dir = args.model_dir
        if args.random is not None:
            model_dir = random_checkpoint(args.random, args.input_size, Path(tmp) / "model")
        settings, rows, pipeline = benchmark(
            model_dir,
            args.batch,
            threads=args.threads,
            repeats=args.repeats,
            min_time=args.min_time,
            warmup=args.warmup,
            pipeline=not args.no_pipeline,
        )
    if args.json:
        print_json(
            {
                "settings": dataclasses.asdict(settings),
                "rows": [dataclasses.asdict(r) for r in rows],
                "pipeline": None if pipeline is None else dataclasses.asdict(pipeline),
            }
        )
        return 0
    print(format_report(settings, rows, pipeline))
    return 0


def random_checkpoint(backbone: str, input_size: int, folder: Path, int8: bool = True) -> Path:
    """A QPM on `backbone` with random weights and assignment, with its float32 export and an
    int8 variant calibrated on real photos (in `folder`/../photos): speed does not depend on
    what the weights learnt."""
    import torch

    from qpm_zoo import PreprocessConfig
    from qpm_zoo.backbone import Backbone
    from qpm_zoo.model import QPM

    from .onnx_export import export_checkpoint
    from .onnx_validate import real_views, sample_photos
    from .onnx_variants import export_variant

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    bb = Backbone.create(backbone)
    classes, n, k = 200, min(50, bb.num_features), 5
    weight = np.zeros((classes, n), np.float32)
    for c in range(classes):
        weight[c, rng.choice(n, k, replace=False)] = 1.0
    model = QPM.from_assignment(
        bb,
        selected_features=rng.choice(bb.num_features, n, replace=False),
        weight=weight,
        mean=rng.random(n).astype(np.float32),
        std=(rng.random(n) + 0.5).astype(np.float32),
        label_names=[f"class {c}" for c in range(classes)],
        k=k,
        preprocessing=PreprocessConfig(input_size=(3, input_size, input_size)),
    )
    model.save_pretrained(folder)
    photos = folder.parent / "photos"
    photos.mkdir()
    for i, view in enumerate(real_views(sample_photos(), 32)):
        image = view.image
        if isinstance(image, np.ndarray):
            from PIL import Image

            image = Image.fromarray(image)
        image.save(photos / f"{i:02d}.png")
    export_checkpoint(folder, images=[str(p) for p in sorted(photos.iterdir())[:2]])
    # Random weights give near-tied logits, so agreement says little here: write it regardless
    # (its record says whether it met the target).
    if int8:
        export_variant(folder, "int8", images=[str(photos)], calibration=[str(photos)], force=True)
    return folder


def seconds_per_call(fn: Callable[[], Any], min_time: float) -> float:
    """Seconds per call of `fn`, calling it until `min_time` has passed (at least once)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def cpu_session_options(ort: Any, threads: int) -> Any:
    """What a CPU server would set: a fixed thread count, no spinning (shared machines), all
    graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def benchmark(
    model_dir: str | Path,
    batches: list[int],
    threads: int = 2,
    repeats: int = 5,
    min_time: float = 1.0,
    warmup: int = 2,
    pipeline: bool = True,
) -> tuple[BenchSettings, list[BenchRow], PipelineRow | None]:
    """Measure torch and the exports on random normalised inputs of each batch size, then the
    whole predict at the largest batch size."""
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
    options = cpu_session_options(ort, threads)
    runtime = QPMOnnx.from_pretrained(
        model_dir, providers=["CPUExecutionProvider"], session_options=options
    )
    int8 = None
    if "int8" in runtime.record.variants:
        int8 = QPMOnnx.from_pretrained(
            model_dir,
            providers=["CPUExecutionProvider"],
            session_options=cpu_session_options(ort, threads),
            variant="int8",
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

        def int8_forward(pixels: np.ndarray = pixels) -> None:
            int8.forward_arrays(pixels)

        for _ in range(warmup):
            torch_forward(), ort_forward(), head_only()
            if int8 is not None:
                int8_forward()
        t_torch, t_ort, t_int8, t_head = [], [], [], []
        for _ in range(repeats):
            t_torch.append(seconds_per_call(torch_forward, min_time))
            t_ort.append(seconds_per_call(ort_forward, min_time))
            if int8 is not None:
                t_int8.append(seconds_per_call(int8_forward, min_time))
            t_head.append(seconds_per_call(head_only, min(min_time, 0.2)))
            progress.update()
        torch_s, ort_s, head_s = (statistics.median(t) for t in (t_torch, t_ort, t_head))
        int8_s = statistics.median(t_int8) if t_int8 else None
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
                int8_img_s=None if int8_s is None else b / int8_s,
                int8_ratio=None
                if int8_s is None
                else statistics.median(t / q for t, q in zip(t_torch, t_int8)),
                int8_ms=None if int8_s is None else 1000 * int8_s,
            )
        )
    progress.close()
    pipeline_row = measure_pipeline(runtime, max(batches), repeats, warmup) if pipeline else None
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
        variants=sorted(runtime.record.variants),
        cpu_vnni=cpu_has_vnni(),
    )
    return settings, rows, pipeline_row


def measure_pipeline(runtime: Any, batch: int, repeats: int, warmup: int) -> PipelineRow:
    """`predict` on PNG files of real photos at the model's input size vs the session alone on
    the same preprocessed batches."""
    from PIL import Image

    from .onnx_validate import real_views, sample_photos

    _, height, width = runtime.config.preprocessing.input_size
    views = real_views(sample_photos(), PIPELINE_IMAGES) or []
    with tempfile.TemporaryDirectory(prefix="qpm-bench-images-") as tmp:
        files = []
        for i in range(PIPELINE_IMAGES):
            if views:
                image = views[i].image
                image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
                image = image.convert("RGB").resize((width, height))
            else:  # no scikit-learn: noise images, same sizes
                noise = np.random.default_rng(i).integers(0, 256, (height, width, 3), np.uint8)
                image = Image.fromarray(noise)
            files.append(Path(tmp) / f"{i:03d}.png")
            image.save(files[-1])
        batches = [
            runtime.preprocessor(files[i : i + batch])[0] for i in range(0, len(files), batch)
        ]

        def session_only() -> None:
            for pixels in batches:
                runtime.forward_arrays(pixels)

        def whole_predict() -> None:
            runtime.predict(files, batch_size=batch)

        for _ in range(warmup):
            session_only(), whole_predict()
        t_session, t_predict = [], []
        for _ in range(repeats):
            t_session.append(seconds_per_call(session_only, 0.0))
            t_predict.append(seconds_per_call(whole_predict, 0.0))
    per_image = 1000 / len(files)
    return PipelineRow(
        batch=batch,
        images=len(files),
        predict_ms=per_image * statistics.median(t_predict),
        session_ms=per_image * statistics.median(t_session),
        overhead=statistics.median(p / s - 1 for p, s in zip(t_predict, t_session)),
    )


def format_report(
    settings: BenchSettings, rows: list[BenchRow], pipeline: PipelineRow | None = None
) -> str:
    """The benchmark's result for people: the settings in a line, one row per batch size (ours,
    torch, ratio), then the pipeline line and the targets."""
    heading = (
        f"{settings.backbone} {settings.input_size[1]}x{settings.input_size[2]}, "
        f"{settings.num_classes} classes, n={settings.n_features}; {settings.threads} threads "
        f"each; onnxruntime {settings.ort_providers} ({settings.ort_optimization}, "
        f"{settings.onnx_dtype}); medians of {settings.repeats} repeats; CPU "
        + {True: "with", False: "without", None: "maybe without"}[settings.cpu_vnni]
        + " VNNI/AMX"
    )
    has_int8 = any(r.int8_ms is not None for r in rows)
    columns = ["batch", "torch ms", "ort ms", "ort/torch"]
    columns += ["int8 ms", "int8/torch"] if has_int8 else []
    columns += ["torch img/s", "ort img/s", "head share"]
    table_rows = []
    for r in rows:
        row: list[Any] = [r.batch, r.torch_ms, r.ort_ms, r.ratio]
        if has_int8:
            row += [r.int8_ms if r.int8_ms is not None else "-", r.int8_ratio or "-"]
        row += [r.torch_img_s, r.ort_img_s, f"{100 * r.head_share:.3f} %"]
        table_rows.append(tuple(row))
    lines = [heading, format_table(columns, table_rows, floatfmt=".3g")]
    if pipeline is not None:
        lines.append(
            f"predict on {pipeline.images} PNG files, batch {pipeline.batch}: "
            f"{pipeline.predict_ms:.3g} ms/image vs session run {pipeline.session_ms:.3g} "
            f"ms/image: overhead {100 * pipeline.overhead:+.1f} %"
        )
    lines.append(TARGETS)
    return "\n".join(lines)
