"""export.gpu_checks: the ONNX rows of `make gpu-check` skip cleanly without a GPU, and the
measuring path (parity, IO-bound images/s) runs end to end where a provider claims to start."""

from __future__ import annotations

import time

import pytest

from export import gpu_checks

KEYS = {"check", "status", "value", "unit", "note"}


def test_without_a_gpu_every_row_is_skipped_with_its_reason(tmp_path):
    if gpu_checks.provider_starts(gpu_checks.CUDA)[0]:
        pytest.skip("CUDA runs here: the rows are measured, not skipped")
    start = time.perf_counter()
    rows = gpu_checks.onnx_gpu_checks(tmp_path)
    assert time.perf_counter() - start < 30  # probes only: no model is built
    assert all(set(r) == KEYS for r in rows)
    checks = [r["check"] for r in rows]
    for precision in ("float32", "float16"):
        assert f"onnx cuda {precision} parity vs torch" in checks
        assert {f"onnx cuda {precision} images/s batch {b}" for b in (1, 8, 64)} <= set(checks)
    assert "onnx tensorrt provider" in checks
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(r["note"] and r["value"] is None for r in rows)
    assert "CUDAExecutionProvider" in rows[0]["note"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_measuring_path_runs_and_a_cpu_fallback_fails(tmp_path, monkeypatch):
    """A provider that starts on the probe but not for the model (forced here: CUDA "starts",
    the session falls back to the CPU) gives measured rows marked failed, not a traceback."""
    real = gpu_checks.provider_starts
    monkeypatch.setattr(
        gpu_checks,
        "provider_starts",
        lambda p: (True, "") if p == gpu_checks.CUDA else real(p),
    )
    rows = gpu_checks.onnx_gpu_checks(tmp_path, backbone="test_resnet", input_size=64)
    by_check = {r["check"]: r for r in rows}
    for precision, tolerance in gpu_checks.PARITY_TOLERANCE.items():
        parity = by_check[f"onnx cuda {precision} parity vs torch"]
        assert 0 <= parity["value"] <= tolerance  # same numbers as torch, on the CPU
        assert parity["status"] == "failed" and "ran on CPUExecutionProvider" in parity["note"]
        for b in (1, 8, 64):
            speed = by_check[f"onnx cuda {precision} images/s batch {b}"]
            assert speed["value"] > 0 and speed["unit"] == "img/s"
