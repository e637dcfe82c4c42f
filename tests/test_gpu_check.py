"""scripts/gpu_check.py (`make gpu-check`) on a machine without a GPU: every GPU check is
skipped with its reason, the table and the JSON still come out, and the parts a GPU run
depends on (the fit config, the CPU probe of its checkpoint) are valid here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_every_check_skips_with_its_reason(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report.json"
    assert gpu_check.main(["--out", str(out), "--work", str(tmp_path / "work")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(r["note"] for r in rows)  # each says why
    assert rows[0]["check"] == "gpus" and "no CUDA GPU visible" in rows[0]["note"]
    names = [r["check"] for r in rows]
    assert sum(name.startswith("bench-train resnet50 448 px") for name in names) == 4
    assert any("onnx" in name for name in names)
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["check", "status", "value", "unit", "note"]


def test_a_failing_check_is_a_row_not_a_crash(gpu_check):
    rows = gpu_check._guarded("x", lambda: 1 / 0)
    assert rows == [gpu_check.row("x", "failed", note="ZeroDivisionError: division by zero")]


def test_the_cuda_fit_config_is_valid(gpu_check):
    from training.config import FitConfig

    config = FitConfig.from_dict(yaml.safe_load(gpu_check._FIT_CONFIG))
    assert config.runtime.device == "cuda" and config.runtime.precision == "bf16"


@pytest.mark.slow  # a fresh interpreter importing torch and qpm_zoo
def test_the_cpu_probe_loads_a_checkpoint_in_float32(gpu_check, qpm_dir):
    done = subprocess.run(
        [sys.executable, "-c", gpu_check._CPU_PROBE, str(qpm_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded in float32, predicted class" in done.stdout
