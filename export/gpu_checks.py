"""The ONNX part of `make gpu-check`: the CUDA provider (float32 and float16: parity with PyTorch
and images/s at batch 1, 8, 64, IO-bound) and TensorRT where onnxruntime has it.

`onnx_gpu_checks(work_dir)` returns one row per check, `{"check", "status", "value", "unit",
"note"}` with status "ok", "skipped" (with the reason: no onnxruntime-gpu, no GPU, provider
did not start) or "failed". Whether a provider really runs is tried on a one-node graph first,
so a machine without a GPU answers in a second, before any model is built.
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BATCHES = (1, 8, 64)
BACKBONE, INPUT_SIZE = "resnet50", 224
#: Largest scale-relative logit difference from PyTorch float32 (see export.onnx_validate);
#: float32 on GPUs may use TF32 convolutions, hence looser than the CPU export's 1e-4.
PARITY_TOLERANCE = {"float32": 1e-3, "float16": 5e-2}
CUDA, TENSORRT = "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _row(
    check: str, status: str, value: float | None = None, unit: str = "", note: str = ""
) -> dict:
    return {"check": check, "status": status, "value": value, "unit": unit, "note": note}


def provider_starts(provider: Any) -> tuple[bool, str]:
    """Whether onnxruntime runs a one-node graph on `provider` (a name or (name, options)),
    and why not."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError as e:
        return False, f"{e.name} is not installed"
    name = provider if isinstance(provider, str) else provider[0]
    if name not in ort.get_available_providers():
        return False, (
            f"this onnxruntime build ({ort.__version__}) has no {name} "
            f"(it has {ort.get_available_providers()}); install onnxruntime-gpu"
        )
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    from qpm_zoo.onnx_model import create_session

    try:  # create_session keeps onnxruntime's fallback messages quiet
        session = create_session(model.SerializeToString(), [provider, "CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - report any failure to start as the reason to skip
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return False, f"{name} failed to start: {type(e).__name__}: {reason}"
    if session.get_providers()[0] != name:
        return False, f"{name} is in the build but did not start (no GPU or driver visible?)"
    return True, ""


def onnx_gpu_checks(
    work_dir: pathlib.Path, backbone: str = BACKBONE, input_size: int = INPUT_SIZE
) -> list[dict]:
    """Run the ONNX GPU checks, building a random-weight QPM (ResNet-50, 224 px) in `work_dir`."""
    work_dir = pathlib.Path(work_dir)
    cuda_ok, cuda_why = provider_starts(CUDA)
    trt_ok, trt_why = provider_starts(TENSORRT)
    rows = [_row("onnx cuda provider", "ok" if cuda_ok else "skipped", note=cuda_why)]
    if not cuda_ok:
        for precision in PARITY_TOLERANCE:
            rows.append(_row(f"onnx cuda {precision} parity vs torch", "skipped", note=cuda_why))
            rows += [
                _row(f"onnx cuda {precision} images/s batch {b}", "skipped", note=cuda_why)
                for b in BATCHES
            ]
    rows.append(_row("onnx tensorrt provider", "ok" if trt_ok else "skipped", note=trt_why))
    if not trt_ok:
        rows.append(_row("onnx tensorrt float32 parity vs torch", "skipped", note=trt_why))
        rows.append(_row("onnx tensorrt images/s batch 8", "skipped", note=trt_why))
    if not (cuda_ok or trt_ok):
        return rows
    try:
        rows += _measure(work_dir, cuda_ok, trt_ok, backbone, input_size)
    except Exception as e:  # one failed row, not a traceback in the whole check
        logger.exception("ONNX GPU checks failed")
        rows.append(_row("onnx gpu checks", "failed", note=f"{type(e).__name__}: {e}"))
    return rows


def _measure(
    work_dir: pathlib.Path, cuda_ok: bool, trt_ok: bool, backbone: str, input_size: int
) -> list[dict]:
    import torch

    from qpm_zoo.model import QPM
    from qpm_zoo.onnx_model import QPMOnnx, cuda_provider, tensorrt_provider

    from .bench import random_checkpoint
    from .onnx_validate import difference
    from .onnx_variants import export_variant

    folder = work_dir / "onnx-gpu-check" / f"{backbone}-{input_size}" / "model"
    if not (folder / "model.fp16.onnx").is_file():  # built once per work folder
        import shutil

        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.parent.mkdir(parents=True)
        random_checkpoint(backbone, input_size, folder, int8=False)
        photos = folder.parent / "photos"
        export_variant(folder, "float16", images=[str(photos)], force=True)
    reference = QPM.from_pretrained(folder).eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference.to(device)
    pixels = np.random.default_rng(0).standard_normal((8, 3, input_size, input_size), np.float32)
    with torch.inference_mode():
        expected = reference.forward_all(torch.from_numpy(pixels).to(device)).logits.cpu().numpy()
    rows = []
    runs = []
    if cuda_ok:
        runs += [
            ("cuda", "float32", None, [cuda_provider()]),
            ("cuda", "float16", "float16", [cuda_provider()]),
        ]
    if trt_ok:
        cache = work_dir / "onnx-gpu-check" / "tensorrt-cache"
        runs.append(("tensorrt", "float32", None, [tensorrt_provider(cache), cuda_provider()]))
    for provider, precision, variant, providers in runs:
        model = QPMOnnx.from_pretrained(
            folder, providers=[*providers, "CPUExecutionProvider"], variant=variant
        )
        label = f"onnx {provider} {precision}"
        parity = difference(model.forward_arrays(pixels).logits, expected)[1]
        # The provider started on the probe graph, so a model that falls back to the CPU fails.
        ok = parity <= PARITY_TOLERANCE[precision] and model.device == "cuda"
        rows.append(
            _row(
                f"{label} parity vs torch",
                "ok" if ok else "failed",
                parity,
                "max rel logit diff",
                f"torch on {device}; ran on {model.providers[0]}; tolerance {PARITY_TOLERANCE[precision]:g}",
            )
        )
        for b in BATCHES if provider == "cuda" else (8,):
            rows.append(
                _row(
                    f"{label} images/s batch {b}",
                    "ok" if model.device == "cuda" else "failed",
                    _images_per_second(model, b, input_size),
                    "img/s",
                    "IO binding, outputs on the device",
                )
            )
    return rows


def _images_per_second(model: Any, batch: int, size: int, seconds: float = 2.0) -> float:
    import onnxruntime as ort

    pixels = np.random.default_rng(batch).standard_normal((batch, 3, size, size), np.float32)
    on_device = ort.OrtValue.ortvalue_from_numpy(pixels, model.device, 0)
    for _ in range(3):
        model.run_bound(on_device)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.run_bound(on_device)
        calls += 1
    return batch * calls / (time.perf_counter() - start)
