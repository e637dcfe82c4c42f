"""The GPU check (`make gpu-check`): what training at scale needs from an NVIDIA machine, in
one table, in under 8 minutes.

1. the GPUs torch sees;
2. bench-train of ResNet-50 at 448 px: fp32, bf16, fp16 and bf16 + channels_last (our step
   against a plain timm step, training/train_bench.py);
3. a 2-process DDP bench under torchrun when there are 2 GPUs (the scaling);
4. a short fit of the known-concept data on CUDA (bf16) whose checkpoint then loads and
   predicts on the CPU;
5. the ONNX GPU checks of export/gpu_checks.py.

It runs with any interpreter that has torch and timm (`make gpu-check PYTHON=python3` on a
machine without our virtual environment): the repository is put on the path, and a check
whose dependencies are missing (e.g. pydantic for the fit, onnxruntime's CUDA provider) is
skipped with its reason. Each row: {"check", "status": ok|skipped|failed, "value", "unit",
"note"}; the table is printed and written as JSON. Exit status 1 only if a check failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: the benchmark of the issue: ResNet-50 at the paper's 448 px
BENCH = {"backbone": "resnet50", "image_size": 448, "batch": 32, "steps": 10, "rounds": 2}
#: (row name, precision, channels_last)
BENCH_VARIANTS = (
    ("fp32", "fp32", False),
    ("bf16", "bf16", False),
    ("fp16", "fp16", False),
    ("bf16 channels_last", "bf16", True),
)
#: what `python -m training fit` needs beyond torch and timm (checked before the fit runs)
FIT_MODULES = (
    "pydantic",
    "omegaconf",
    "yaml",
    "safetensors",
    "huggingface_hub",
    "tqdm",
    "sklearn",
    "scipy",
    "pyscipopt",
    "PIL",
)
FIT_TIMEOUT_S = 240
DDP_TIMEOUT_S = 150


def row(
    check: str, status: str, value: float | None = None, unit: str = "", note: str = ""
) -> dict:
    return {"check": check, "status": status, "value": value, "unit": unit, "note": note}


def _guarded(check: str, fn: Callable[[], list[dict]]) -> list[dict]:
    """A check's rows; an unexpected error is a failed row with its last line, not a crash."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every check reports, whatever happens
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return [row(check, "failed", note=last)]


def gpu_rows() -> tuple[list[dict], int]:
    import torch

    if not torch.cuda.is_available():
        built = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
        note = f"no CUDA GPU visible (torch {torch.__version__} built {built})"
        return [row("gpus", "skipped", 0, "GPUs", note)], 0
    count = torch.cuda.device_count()
    names = ", ".join(sorted({torch.cuda.get_device_name(i) for i in range(count)}))
    note = f"{names}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    return [row("gpus", "ok", count, "GPUs", note)], count


def bench_rows(gpus: int) -> list[dict]:
    name = f"bench-train {BENCH['backbone']} {BENCH['image_size']} px"
    if gpus == 0:
        return [row(f"{name} {v}", "skipped", note="no CUDA GPU") for v, _, _ in BENCH_VARIANTS]
    import torch

    from training.train_bench import BenchSettings, run_bench, summarise

    rows = []
    for label, precision, channels_last in BENCH_VARIANTS:
        check = f"{name} {label}"

        def one(precision=precision, channels_last=channels_last, check=check) -> list[dict]:
            settings = BenchSettings(**BENCH, precision=precision, channels_last=channels_last)
            result = summarise(run_bench(settings, torch.device("cuda", 0)))[0]
            note = (
                f"batch {BENCH['batch']}; plain timm CE step {result['plain_images_per_s']:.1f} "
                f"img/s; ours / plain {result['ratio']:.3f}"
            )
            return [row(check, "ok", round(result["images_per_s"], 2), "img/s", note)]

        rows += _guarded(check, one)
        torch.cuda.empty_cache()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_rows(gpus: int, work: Path) -> list[dict]:
    check = "DDP 2 processes bench-train bf16"
    if gpus < 2:
        return [row(check, "skipped", note=f"needs 2 GPUs, this machine has {gpus}")]
    out = work / "ddp.json"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(Path(__file__).resolve()),
        "--ddp-worker",
        str(out),
    ]
    done = subprocess.run(
        command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=DDP_TIMEOUT_S
    )
    if done.returncode != 0:
        return [row(check, "failed", note=_last_line(done.stderr))]
    result = json.loads(out.read_text())
    note = f"1 process {result['single']:.1f} img/s; 2 processes {result['images_per_s']:.1f} img/s"
    return [row(check, "ok", round(result["scaling"], 3), "scaling", note)]


def ddp_worker(out: Path) -> int:
    """Under torchrun: the 2-process bench (rank 0 writes the result)."""
    import torch
    import torch.distributed as dist

    from training.train_bench import BenchSettings, run_bench, summarise

    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    device = torch.device("cuda", local)
    dist.init_process_group("nccl", device_id=device)
    try:
        settings = BenchSettings(**{**BENCH, "steps": 5}, precision="bf16")
        rows = run_bench(settings, device)
    finally:
        rank = dist.get_rank()
        dist.destroy_process_group()
    if rank == 0:
        table = summarise(rows)
        single = next(r for r in table if r["processes"] == 1)
        multi = next(r for r in table if r["processes"] == 2)
        out.write_text(json.dumps({**multi, "single": single["images_per_s"]}))
    return 0


def missing_modules(names: tuple[str, ...]) -> list[str]:
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def fit_rows(gpus: int, work: Path) -> list[dict]:
    check = "fit concepts on CUDA (bf16), checkpoint on CPU"
    if gpus == 0:
        return [row(check, "skipped", note="no CUDA GPU")]
    missing = missing_modules(FIT_MODULES)
    if missing:
        note = f"missing Python packages for `python -m training fit`: {', '.join(missing)}"
        return [row(check, "skipped", note=note)]
    config = work / "concepts.yaml"
    config.write_text(_FIT_CONFIG)
    run_dir = work / "fit"
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "fit",
            str(config),
            "--out",
            str(run_dir),
            "--json",
            "--quiet",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=FIT_TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return [row(check, "failed", note=_last_line(done.stderr))]
    accuracy = json.loads(done.stdout)["stages"]["evaluate"]["accuracy"]
    # the checkpoint trained on the GPU loads and predicts on the CPU, in float32
    probe = subprocess.run(
        [sys.executable, "-c", _CPU_PROBE, str(run_dir / "model")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    if probe.returncode != 0:
        return [row(check, "failed", note=f"CPU load: {_last_line(probe.stderr)}")]
    note = f"test accuracy {accuracy:.3f}; on the CPU: {probe.stdout.strip()}"
    return [row(check, "ok", round(seconds, 1), "s", note)]


_FIT_CONFIG = """\
seed: 0
data:
  name: concepts
  concepts: {num_classes: 6, concepts_per_class: 3, pool_size: 10, image_size: 64,
             train_size: 1200, test_size: 300}
model: {backbone: resnet18, reduced_strides: true, input_size: 64, crop_pct: 1.0,
        mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
dense: {epochs: 3, batch_size: 64, lr: 0.05, classifier_lr: 0.05, step_size: 2, augment: light}
assignment: {n: 10, k: 3, time_limit: 30}
finetune: {epochs: 2, batch_size: 64, lr: 0.01, step_size: 2, augment: light}
runtime: {device: cuda, precision: bf16, channels_last: true}
"""

_CPU_PROBE = """\
import sys, numpy as np, torch
from qpm_zoo.model import QPM
model = QPM.from_pretrained(sys.argv[1])
assert not torch.cuda.is_available()
dtypes = {p.dtype for p in model.state_dict().values() if p.is_floating_point()}
assert dtypes == {torch.float32}, dtypes
image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
prediction = model.predict([image])[0]
print(f"loaded in float32, predicted class {prediction.label!r}")
"""


def onnx_rows(work: Path) -> list[dict]:
    try:
        from export.gpu_checks import onnx_gpu_checks
    except ImportError as exc:
        return [row("onnx gpu checks", "skipped", note=f"export.gpu_checks not importable ({exc})")]
    onnx_work = work / "onnx"
    onnx_work.mkdir(exist_ok=True)
    return onnx_gpu_checks(onnx_work)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(no output)"


def format_rows(rows: list[dict]) -> str:
    headers = ("check", "status", "value", "unit", "note")
    cells = [
        [
            str(r["check"]),
            r["status"],
            "" if r["value"] is None else f"{r['value']:g}",
            r["unit"],
            r["note"],
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"), help="JSON report")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker is not None:
        return ddp_worker(args.ddp_worker)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        try:
            rows, gpus = gpu_rows()
        except ImportError as exc:  # an interpreter without torch: say so, skip the rest
            rows, gpus = [row("gpus", "skipped", note=f"torch is not importable ({exc})")], 0
        rows += bench_rows(gpus)
        rows += _guarded("DDP 2 processes", lambda: ddp_rows(gpus, work))
        rows += _guarded("fit on CUDA", lambda: fit_rows(gpus, work))
        rows += _guarded("onnx gpu checks", lambda: onnx_rows(work))
    seconds = time.perf_counter() - started
    print(format_rows(rows))
    print(f"gpu-check: {seconds:.0f} s; JSON in {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seconds": round(seconds, 1), "rows": rows}, indent=2) + "\n")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
