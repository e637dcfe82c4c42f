"""configs/demo-vit.yaml end to end (slow), reduced to a few hundred images: a ViT trained from
scratch through every stage, whose checkpoint predicts, explains exactly and exports to ONNX
with parity (docs/method.md §8.1)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from export.cli import main as export_main
from training.cli import main as training_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

#: the recipe at a fraction of its size: the same model, data generator and stages
REDUCED = [
    "data.concepts.train_size=600",
    "data.concepts.test_size=200",
    "dense.epochs=2",
    "finetune.epochs=1",
    "assignment.time_limit=10",
    "data.calibration=200",
]


def test_demo_vit_trains_explains_and_exports(tmp_path, capsys):
    from qpm_zoo import QPMOnnx
    from qpm_zoo.model import QPM

    out = tmp_path / "demo-vit"
    args = ["fit", str(REPO / "configs" / "demo-vit.yaml"), "--out", str(out), "--json", "--quiet"]
    for item in REDUCED:
        args += ["--set", item]
    assert training_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    stages = {"dense", "statistics", "assignment", "finetune", "evaluate", "calibrate"}
    assert set(summary["stages"]) == stages  # demo-vit calibrates like the demo it extends

    model_dir = out / "model"
    model = QPM.from_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["backbone"]["name"] == "vit_small_patch16_224"
    assert config["backbone"]["kwargs"]["patch_size"] == 8
    metrics = model.config.metrics
    for key in ("accuracy", "dense_accuracy", "sid_at_4", "pointing_game", "concept_auc"):
        assert 0 <= metrics[key] <= 1, (key, metrics[key])

    images = [
        np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(3)
    ]
    for item in model.predict_with_maps(images):
        e = item.prediction.explanation
        assert math.isclose(e.logit, sum(f.contribution for f in e.features), abs_tol=1e-5)
        assert item.maps.shape[-2:] == (8, 8)

    exported = io.StringIO()
    with contextlib.redirect_stdout(exported):
        assert export_main(["onnx", str(model_dir), "--json"]) == 0
    result = json.loads(exported.getvalue())
    assert result["passed"] and list(result["record"]["feature_map_size"]) == [8, 8]
    batch, _ = model.preprocessor(images)
    got = QPMOnnx.from_pretrained(model_dir).forward_arrays(batch, with_maps=True)
    want = model.forward_arrays(batch, with_maps=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
