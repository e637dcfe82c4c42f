"""Slow: export and ONNX parity at realistic sizes, on the backbones the demo and the paper use.

EfficientNet-Lite0 at 224 px is the backbone with offline ImageNet weights (the demo's kind);
ResNet-50 with reduced strides at 224 px (28×28 maps) is the paper's model. Both with the
paper's n=50, k=5 and 200 classes, random weights (the export does not depend on their values).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_assignment

from export.onnx_validate import sample_photos
from qpm_zoo import PreprocessConfig, QPMOnnx
from qpm_zoo.backbone import Backbone
from qpm_zoo.model import QPM

LABELS = [f"class {i:03d}" for i in range(200)]


def _checkpoint(folder, name: str, reduced_strides: bool) -> None:
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    backbone = Backbone.create(name, reduced_strides=reduced_strides)
    QPM.from_assignment(
        backbone,
        selected_features=rng.choice(backbone.num_features, 50, replace=False),
        weight=random_assignment(rng, len(LABELS), 50, 5),
        mean=rng.random(50).astype(np.float32) * 0.1,
        std=(rng.random(50) * 0.05 + 0.01).astype(np.float32),
        label_names=LABELS,
        k=5,
        preprocessing=PreprocessConfig(input_size=(3, 224, 224)),
    ).save_pretrained(folder)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, reduced_strides, maps",
    [("tf_efficientnet_lite0", False, [7, 7]), ("resnet50", True, [28, 28])],
)
def test_realistic_export_matches_torch(tmp_path, name, reduced_strides, maps):
    folder = tmp_path / "model"
    _checkpoint(folder, name, reduced_strides)
    result = subprocess.run(  # the command exactly as users run it
        [sys.executable, "-m", "export", "onnx", str(folder), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)["record"]
    assert record["feature_map_size"] == maps
    assert max(record["validation"]["max_rel_diff"].values()) <= 1e-4

    torch_model, onnx_model = QPM.from_pretrained(folder), QPMOnnx.from_pretrained(folder)
    photos = [np.asarray(p.image) for p in sample_photos()]
    for a, b in zip(onnx_model.predict(photos), torch_model.predict(photos)):
        assert (a.label, [s.label for s in a.top_k]) == (b.label, [s.label for s in b.top_k])
        scale = max(abs(f.contribution) for f in b.explanation.features)
        for fa, fb in zip(a.explanation.features, b.explanation.features):
            assert fa.index == fb.index and abs(fa.contribution - fb.contribution) <= 1e-4 * scale
