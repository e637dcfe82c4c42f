"""Export a checkpoint to ONNX (model.onnx), validate it against PyTorch, record it in config.json.

    python -m export onnx MODEL_DIR [--out FILE] [--opset N] [--images IMG ...] [--json]
    python -m export onnx MODEL_DIR --precision fp16 [--images SOURCE ...]        (a variant)
    python -m export onnx MODEL_DIR --quantize int8 --calibration SOURCE [...]    (a variant)

The graph is checked with onnx.checker, then run with onnxruntime (CPU) through QPMOnnx, the
same loader users get, on random and real images at batch 1 and 5, and compared with the
PyTorch model output by output (see export.onnx_validate for the measure). Only an export that
passes is written: model.onnx and config.json's `onnx` entry (file, opset, SHA-256, dtype,
input size, measured differences) replace the checkpoint together (qpm_zoo.checkpoint), and an
earlier export is dropped (its variants too). A failing export changes nothing on disk.

`--precision fp16` and `--quantize int8` add a variant beside the float32 export instead (see
export.onnx_variants), validated by top-1 agreement on real images.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from qpm_zoo.checkpoint import write_checkpoint
from qpm_zoo.config import CONFIG_NAME, ONNX_NAME
from qpm_zoo.errors import CheckpointError, UsageError
from qpm_zoo.formatting import print_json
from qpm_zoo.onnx_model import OUTPUT_NAMES, OnnxRecord, QPMOnnx, import_onnxruntime
from qpm_zoo.preprocess import LoadedImage, load_image
from qpm_zoo.version import __version__

from .onnx_validate import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    ValidationReport,
    sample_photos,
    validate,
    validation_inputs,
)
from .quantize import DEFAULT_WEIGHT_BITS, WEIGHT_BITS
from .steps import Steps

VALIDATION_BATCHES = (1, 5)
#: torch's dynamo exporter emits opset 18 or newer.
MIN_OPSET = DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    path: Path
    record: OnnxRecord
    report: ValidationReport
    written: bool  #: False when validation failed (nothing was written)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        type=Path,
        help="checkpoint folder (config.json, model.safetensors)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help=f"output file inside MODEL_DIR (default MODEL_DIR/{ONNX_NAME})",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} or newer (default {DEFAULT_OPSET})",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16"],
        default="fp32",
        help="fp32: the main export (model.onnx); fp16: a variant with the backbone in float16 "
        "for GPU providers (model.fp16.onnx; inputs, outputs and head stay float32)",
    )
    p.add_argument(
        "--fp16", action="store_true", help="the same as --precision fp16 (kept for scripts)"
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        help="a variant with the backbone statically quantised to int8 for CPU servers "
        "(model.int8.onnx); needs --calibration",
    )
    p.add_argument(
        "--calibration",
        nargs="+",
        metavar="SOURCE",
        help="images to calibrate int8 ranges on: a folder, files, or the checkpoint's 'train' "
        "or 'test' split",
    )
    p.add_argument(
        "--images",
        nargs="+",
        metavar="SOURCE",
        help="real images for the validation: files, or for variants also folders or a split "
        "(default: the scikit-learn photos; for variants the checkpoint's test split)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=1000,
        help="variants: at most this many validation images per source (default 1000)",
    )
    p.add_argument(
        "--calibration-limit",
        type=int,
        default=256,
        help="int8: at most this many calibration images per source (default 256)",
    )
    p.add_argument(
        "--weight-bits",
        type=int,
        choices=WEIGHT_BITS,
        help="int8: bits of the weights' range; 7 (default) cannot saturate the int16 sums of "
        "x86 CPUs without VNNI, as 8 can; 8 for VNNI/AMX servers",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        help=f"largest allowed relative difference of the float32 export (default {FP32_TOLERANCE:g})",
    )
    p.add_argument(
        "--all-channels",
        action="store_true",
        help="compute every channel of the backbone's last layer (default: a ResNet's last "
        "block computes only the n channels the head reads; same outputs, faster)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the record and the validation rows as JSON"
    )


def run(args: argparse.Namespace) -> int:
    variant = _variant(args)
    if variant is not None:
        return _run_variant(args, variant)
    if args.calibration:
        raise UsageError("--calibration is for --quantize int8")
    result = export_checkpoint(
        args.model_dir,
        out=args.out,
        opset=args.opset,
        fp16=False,
        images=args.images,
        tolerance=args.tolerance,
        all_channels=args.all_channels,
    )
    report = result.report
    if args.json:
        print_json(
            {
                "file": str(result.path),
                "written": result.written,
                "passed": report.passed,
                "record": result.record.to_dict(),
                "validation": [dataclasses.asdict(r) for r in report.rows],
            }
        )
    else:
        print(report.table())
        worst = ", ".join(f"{o} {report.worst(o).max_rel:.2g}" for o in OUTPUT_NAMES)
        verdict = "passed" if report.passed else "FAILED"
        print(
            f"\nlargest relative differences: {worst} (tolerance {report.tolerance:g}): {verdict}"
        )
        print(f"labels agree on {report.labels_agree}/{report.labels_total} images")
        if result.written:
            size = result.path.stat().st_size / 2**20
            print(
                f"wrote {result.path} ({size:.1f} MiB, opset {result.record.opset}, {result.record.dtype}, "
                f"sha256 {result.record.sha256[:12]}…) and its entry in {args.model_dir / CONFIG_NAME}"
            )
    if not result.written:
        print(
            f"python -m export onnx: the export differs from PyTorch by more than {report.tolerance:g}; "
            "nothing was written",
            file=sys.stderr,
        )
        return 1
    return 0


def _variant(args: argparse.Namespace) -> str | None:
    """The variant the options ask for: "float16", "int8" or None (the float32 export)."""
    fp16 = args.fp16 or args.precision == "fp16"
    if fp16 and args.quantize:
        raise UsageError(
            "--precision fp16 and --quantize int8 are two variants; make one at a time"
        )
    if (fp16 or args.quantize) and (
        args.out is not None or args.tolerance is not None or args.all_channels
    ):
        raise UsageError(
            "--out, --tolerance and --all-channels are for the float32 export, not for variants "
            "(a variant follows the float32 export's channels)"
        )
    if args.weight_bits is not None and not args.quantize:
        raise UsageError("--weight-bits is for --quantize int8")
    return "float16" if fp16 else ("int8" if args.quantize else None)


def _run_variant(args: argparse.Namespace, precision: str) -> int:
    from .onnx_variants import export_variant

    result = export_variant(
        args.model_dir,
        precision,
        images=args.images,
        calibration=args.calibration,
        limit=args.limit,
        calibration_limit=args.calibration_limit,
        weight_bits=args.weight_bits or DEFAULT_WEIGHT_BITS,
    )
    if args.json:
        print_json(
            {
                "file": str(result.path),
                "written": result.written,
                "passed": result.report.passed,
                "variant": result.variant.to_dict(),
            }
        )
    else:
        print(result.report.summary())
        if result.written:
            size = result.path.stat().st_size / 2**20
            print(
                f"wrote {result.path} ({size:.1f} MiB, sha256 {result.variant.sha256[:12]}…) and "
                f"onnx.variants.{precision} in {args.model_dir / CONFIG_NAME}"
            )
    if not result.written:
        print(
            f"python -m export onnx: the {precision} variant misses its target; nothing was written",
            file=sys.stderr,
        )
        return 1
    return 0


def _output_path(model_dir: Path, out: Path | None) -> tuple[Path, str]:
    """The export's path and its name relative to the checkpoint (what config.json records)."""
    path = (model_dir / ONNX_NAME) if out is None else out
    try:
        relative = path.resolve().relative_to(model_dir.resolve())
    except ValueError:
        raise UsageError(
            f"--out {out} is outside the checkpoint folder {model_dir}; config.json records the "
            "export by its path inside the checkpoint"
        ) from None
    if path.suffix != ".onnx" or not relative.parts:
        raise UsageError(f"--out {out}: give a file name ending in .onnx")
    return path, PurePosixPath(*relative.parts).as_posix()


def export_checkpoint(
    model_dir: str | Path,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    images: Sequence[str] | None = None,
    tolerance: float | None = None,
    all_channels: bool = False,
) -> ExportResult:
    """Export, check, validate and (if it passes) write the export and its config.json entry."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(
            f"{model_dir}: not a checkpoint folder (the export is written into it; download a Hub "
            "checkpoint first, e.g. with `hf download REPO --local-dir DIR`)"
        )
    path, relative = _output_path(model_dir, None if out is None else Path(out))
    if tolerance is None:
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    if not tolerance > 0:
        raise UsageError(f"--tolerance must be positive, got {tolerance}")
    if opset < MIN_OPSET:
        raise UsageError(
            f"opset {opset} is too old: the dynamo exporter needs opset {MIN_OPSET} or newer"
        )
    photos = sample_photos() if images is None else [load_image(p) for p in images]
    import_onnxruntime()  # the validation needs it: fail now, not after a long export

    with Steps() as steps:
        return _export(
            model_dir, path, relative, opset, fp16, photos, tolerance, all_channels, steps
        )


def _export(
    model_dir: Path,
    path: Path,
    relative: str,
    opset: int,
    fp16: bool,
    photos: list[LoadedImage],
    tolerance: float,
    all_channels: bool,
    steps: Steps,
) -> ExportResult:
    # Heavy imports here, so that `python -m export onnx --help` answers at once.
    import onnx
    import onnxscript
    import torch

    from qpm_zoo.model import QPM

    from .torch_to_onnx import CHANNELS_RECORD, check_graph, export_graph, head_metadata

    steps(f"loading {model_dir}")
    model = QPM.from_pretrained(model_dir)
    config = model.config
    dtype = "float16" if fp16 else "float32"
    steps(f"exporting with torch.onnx (dynamo, opset {opset}, {dtype})")
    graph = export_graph(model, opset=opset, half=fp16, all_channels=all_channels)
    steps("checking with onnx.checker")
    check_graph(graph.data)

    record = OnnxRecord(
        file=relative,
        opset=graph.opset,
        sha256=hashlib.sha256(graph.data).hexdigest(),
        dtype=graph.dtype,
        input_size=tuple(config.preprocessing.input_size),
        dynamic_batch=True,
        feature_map_size=graph.feature_map_size,
        **head_metadata(model),
        exporter={
            "method": "torch.onnx.export(dynamo=True)",
            "io_dtype": "float32",
            "last_layer": CHANNELS_RECORD[graph.selected_channels_only],
            "qpm_zoo": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__,
        },
    )
    steps(
        f"validating against PyTorch ({'random and real' if photos else 'random'} inputs, batch 1 and 5)"
    )
    runtime = QPMOnnx(
        config.replace(onnx=record),
        graph.data,
        providers=["CPUExecutionProvider"],
        source=str(model_dir / CONFIG_NAME),
    )
    inputs = validation_inputs(runtime.preprocessor, photos, VALIDATION_BATCHES)
    report = validate(model, runtime, inputs, tolerance)
    record = record.model_copy(update={"validation": report.to_record()})
    steps.done()
    if not photos:
        print(
            "note: no real images (pass --images or install scikit-learn); validated on random inputs",
            file=sys.stderr,
        )
    if not report.passed:
        return ExportResult(path, record, report, written=False)
    write_checkpoint(
        model_dir,
        config.replace(onnx=record),
        files={relative: graph.data},
        keep=_kept_files(model_dir),
    )
    return ExportResult(path, record, report, written=True)


def _kept_files(model_dir: Path) -> list[str]:
    """What an export keeps of the checkpoint: everything but an earlier export."""
    files = (p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    return [name for name in files if not name.endswith(".onnx")]
