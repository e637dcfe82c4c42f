"""Variants of a checkpoint's ONNX export: float16 (GPU providers) and int8 (CPU servers).

    python -m export onnx MODEL_DIR --precision fp16 [--images SOURCE ...]
    python -m export onnx MODEL_DIR --quantize int8 --calibration SOURCE [--images SOURCE ...]

A variant sits beside the float32 export (which must be there and current: its head
fingerprint matches the weights) as model.fp16.onnx or model.int8.onnx, recorded under
config.json's `onnx.variants`, and `QPMOnnx.from_pretrained(..., variant=...)` loads it. It is
written only if, on real images (default: the checkpoint's test split), its top-1 agreement
with the PyTorch float32 model reaches the target (99.5 % for float16, 99 % for int8) and its
explanations add up exactly for its own outputs; otherwise nothing changes on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qpm_zoo.checkpoint import write_checkpoint
from qpm_zoo.config import CONFIG_NAME, OnnxPrecision, OnnxVariant, QPMConfig
from qpm_zoo.errors import CheckpointError, UsageError
from qpm_zoo.onnx_model import QPMOnnx, file_sha256
from qpm_zoo.preprocess import ImagePreprocessor, LoadedImage
from qpm_zoo.version import __version__

from .onnx_validate import VariantReport, validate_variant
from .quantize import DEFAULT_WEIGHT_BITS, WEIGHT_BITS
from .real_images import real_images
from .steps import Steps

VARIANT_FILES: dict[str, str] = {"float16": "model.fp16.onnx", "int8": "model.int8.onnx"}
RUN_BATCH = 32


@dataclass(frozen=True)
class VariantResult:
    path: Path
    variant: OnnxVariant
    report: VariantReport
    written: bool  #: False when the variant missed its target (nothing was written)


def preprocessed_batches(
    preprocessor: ImagePreprocessor, images: Sequence[LoadedImage], batch: int = RUN_BATCH
) -> list[np.ndarray]:
    arrays = [preprocessor.to_model_input(item) for item in images]
    return [np.stack(arrays[i : i + batch]) for i in range(0, len(arrays), batch)]


def export_variant(
    model_dir: str | Path,
    precision: OnnxPrecision,
    images: Sequence[str] | None = None,
    calibration: Sequence[str] | None = None,
    limit: int = 1000,
    calibration_limit: int = 256,
    force: bool = False,
    weight_bits: int = DEFAULT_WEIGHT_BITS,
) -> VariantResult:
    """Build, validate and (if it meets its target, or `force`) write one variant of the export.

    `force` is for benchmarks on random weights, whose near-tied logits make agreement
    meaningless; the variant's record still says whether it met its target. `weight_bits` is
    the int8 weights' range (export.quantize: 7 cannot saturate on CPUs without VNNI)."""
    model_dir = Path(model_dir)
    config = QPMConfig.load(model_dir / CONFIG_NAME)
    if config.onnx is None:
        raise CheckpointError(
            f"{model_dir / CONFIG_NAME}: has no float32 ONNX export to make a {precision} variant "
            "of; run first: python -m export onnx MODEL_DIR"
        )
    if precision == "int8" and not calibration:
        raise UsageError("--quantize int8 needs --calibration DIR_OR_SPLIT (e.g. train)")
    if precision == "int8" and weight_bits not in WEIGHT_BITS:
        raise UsageError(f"--weight-bits must be one of {WEIGHT_BITS}, got {weight_bits}")
    if limit < 1 or calibration_limit < 1:
        raise UsageError("--limit and --calibration-limit must be at least 1")
    sources = list(images) if images else ["test" if config.training.get("data") else ""]
    if sources == [""]:
        raise UsageError(
            "config.json has no training recipe, so there is no test split to validate on; "
            "pass --images DIR"
        )
    with Steps() as steps:
        return _export_variant(
            model_dir,
            config,
            precision,
            sources,
            calibration,
            limit,
            calibration_limit,
            steps,
            force,
            weight_bits,
        )


def _export_variant(
    model_dir: Path,
    config: QPMConfig,
    precision: OnnxPrecision,
    sources: list[str],
    calibration: Sequence[str] | None,
    limit: int,
    calibration_limit: int,
    steps: Steps,
    force: bool,
    weight_bits: int,
) -> VariantResult:
    from qpm_zoo.model import QPM

    from .quantize import cpu_has_vnni, quantize_int8
    from .torch_to_onnx import (
        CHANNELS_RECORD,
        check_graph,
        export_graph,
        head_metadata,
        stamp_metadata,
    )

    steps(f"loading {model_dir}")
    model = QPM.from_pretrained(model_dir)
    record = config.onnx
    fingerprints = head_metadata(model)
    if (record.assignment_sha256, record.head_sha256) != (
        fingerprints["assignment_sha256"],
        fingerprints["head_sha256"],
    ):
        raise CheckpointError(
            f"{model_dir / CONFIG_NAME}: the float32 export '{record.file}' was not made from "
            "these weights (or predates head fingerprints); re-export it first: "
            "python -m export onnx MODEL_DIR"
        )
    preprocessor = ImagePreprocessor(config.preprocessing)
    if precision == "float16":
        steps("exporting with torch.onnx (dynamo, float16 backbone)")
        all_channels = record.exporter.get("last_layer") != CHANNELS_RECORD[True]
        graph = export_graph(model, opset=record.opset, half=True, all_channels=all_channels)
        data = graph.data
        exporter = {
            "method": "torch.onnx.export(dynamo=True), backbone in float16",
            "last_layer": CHANNELS_RECORD[graph.selected_channels_only],
        }
    else:
        main_file = model_dir / record.file
        if file_sha256(main_file) != record.sha256:
            raise CheckpointError(f"{main_file}: SHA-256 does not match 'onnx.sha256'; re-export")
        steps(f"reading calibration images ({', '.join(calibration)})")
        calib = preprocessed_batches(
            preprocessor, real_images(calibration, config, calibration_limit)
        )
        steps(f"quantising to int8 (static, {sum(len(b) for b in calib)} calibration images)")
        import onnx

        proto = onnx.load_from_string(quantize_int8(main_file.read_bytes(), calib, weight_bits))
        stamp_metadata(proto, fingerprints)
        data = proto.SerializeToString()
        exporter = {
            "method": "onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights, "
            "uint8 activations, MinMax calibration; head in float32)",
            "weight_bits": weight_bits,
            "calibration": list(calibration),
            "calibration_images": sum(len(b) for b in calib),
        }
    steps("checking with onnx.checker")
    check_graph(data)
    variant = OnnxVariant(
        file=VARIANT_FILES[precision],
        sha256=hashlib.sha256(data).hexdigest(),
        precision=precision,
        exporter={**exporter, "qpm_zoo": __version__},
    )
    updated = config.replace(
        onnx=record.model_copy(update={"variants": {**record.variants, precision: variant}})
    )
    steps(f"validating against PyTorch float32 on real images ({', '.join(sources)})")
    runtime = QPMOnnx(
        updated,
        data,
        providers=["CPUExecutionProvider"],
        source=str(model_dir / CONFIG_NAME),
        variant=precision,
    )
    batches = preprocessed_batches(preprocessor, real_images(sources, config, limit))
    report = validate_variant(model, runtime, batches, precision)
    validation = report.to_record()
    if precision == "int8":  # what int8 measures depends on the CPU's 8-bit kernels
        validation["cpu_vnni"] = cpu_has_vnni()
    variant = variant.model_copy(update={"validation": validation})
    steps.done()
    path = model_dir / variant.file
    if not (report.passed or force):
        return VariantResult(path, variant, report, written=False)
    updated = config.replace(
        onnx=record.model_copy(update={"variants": {**record.variants, precision: variant}})
    )
    kept = [
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and p.relative_to(model_dir).as_posix() != variant.file
    ]
    write_checkpoint(model_dir, updated, files={variant.file: data}, keep=kept)
    return VariantResult(path, variant, report, written=True)
