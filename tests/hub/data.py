"""Test data of the Hub tests: a checkpoint with an ONNX export, and images to predict.

The export (`python -m export onnx`, the exporter users run) takes seconds, so its folder is
kept in pytest's session temp dir and reused by the upload and download tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: What the evaluation and the training pipeline leave in config.json, for the model card.
METRICS = {
    "accuracy": 0.8125,
    "dense_accuracy": 0.84,
    "sid_at_5": 0.61,
    "nf_features": 6,
    "per_class": 2,
}
TRAINING = {
    "model_type": "qpm",
    "seed": 3,
    "data": {"name": "concepts"},
    "publish": {"license": "apache-2.0"},
}


def exported_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small QPM with metrics, a recipe and a validated model.onnx (skips without exporter)."""
    pytest.importorskip("onnxruntime")
    export = pytest.importorskip("export.onnx_export", reason="the ONNX exporter is not there")
    from conftest import make_model

    folder = tmp_path_factory.getbasetemp() / "hub-exported-checkpoint"
    if (folder / "model.onnx").is_file():
        return folder
    model = make_model("qpm", seed=11)
    model.set_config(model.config.replace(metrics=METRICS, training=TRAINING))
    model.save_pretrained(folder)
    result = export.export_checkpoint(folder)
    assert result.written, "the exporter refused its own export"
    return folder


def random_images(folder: Path, seed: int, sizes: list[tuple[int, int]]) -> list[str]:
    """PNG files of random RGB noise, one per (height, width): inputs whose predictions differ."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"image{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths
