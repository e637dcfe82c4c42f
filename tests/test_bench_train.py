"""`python -m training bench-train`: our training step beside a plain timm step, one run."""

from __future__ import annotations

import json

import torch

from training.cli import main as training_main
from training.train_bench import BenchSettings, run_bench, summarise

TINY = BenchSettings(
    backbone="test_resnet", image_size=32, batch=4, steps=1, rounds=2, warmup=1, num_classes=5
)


def test_both_steps_are_timed_and_compared():
    rows = run_bench(TINY, torch.device("cpu"))
    assert sorted(r.variant for r in rows) == ["ours", "plain"]
    assert all(r.processes == 1 and r.images_per_s > 0 and r.step_ms > 0 for r in rows)
    (summary,) = summarise(rows)
    plain = next(r for r in rows if r.variant == "plain")
    assert summary["ratio"] == summary["images_per_s"] / plain.images_per_s
    assert summary["scaling"] == 1.0


def test_the_command_prints_json_and_a_table(capsys):
    args = ["--backbone", "test_resnet", "--image-size", "32", "--batch", "4", "--steps", "1"]
    args += ["--rounds", "1", "--warmup", "0", "--classes", "5", "--precision", "bf16"]
    assert training_main(["bench-train", *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["precision"] == "bf16" and report["rows"][0]["processes"] == 1
    assert training_main(["bench-train", *args, "--channels-last"]) == 0
    out = capsys.readouterr().out
    assert "bf16, channels_last, cpu" in out and "ours / plain" in out


def test_bad_numbers_are_one_line_errors(capsys):
    assert training_main(["bench-train", "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
