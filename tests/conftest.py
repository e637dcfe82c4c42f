"""Shared fixtures: small but real checkpoints written to disk by the library itself."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path

import numpy as np
import pytest

LABELS = ["Cardinal", "Summer Tanager", "Blue Jay", "Indigo Bunting", "Red-winged Blackbird"]


def random_assignment(rng: np.random.Generator, num_classes: int, n: int, k: int) -> np.ndarray:
    """A binary [C, n] matrix with exactly k ones per row and distinct rows."""
    rows: set[tuple[int, ...]] = set()
    while len(rows) < num_classes:
        rows.add(tuple(sorted(rng.choice(n, k, replace=False).tolist())))
    w = np.zeros((num_classes, n), dtype=np.float32)
    for c, row in enumerate(sorted(rows, key=lambda r: rng.random())):
        w[c, list(row)] = 1.0
    return w


def make_model(
    model_type: str = "qpm",
    seed: int = 0,
    labels: list[str] | None = None,
    n: int = 6,
    k: int = 2,
    input_size: int = 64,
    backbone: str = "test_resnet",
):
    """A QPM (or Q-SENN head) on a tiny timm backbone with random weights and assignment."""
    import torch

    from qpm_zoo import PreprocessConfig
    from qpm_zoo.backbone import Backbone
    from qpm_zoo.model import QPM

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = labels or LABELS
    bb = Backbone.create(backbone)
    w = random_assignment(rng, len(labels), n, k)
    bias = None
    if model_type == "qsenn":
        w = w * rng.choice([-0.7, 0.7], size=w.shape).astype(np.float32)
        bias = rng.normal(size=len(labels)).astype(np.float32)
    return QPM.from_assignment(
        bb,
        selected_features=rng.choice(bb.num_features, n, replace=False),
        weight=w,
        bias=bias,
        mean=rng.random(n).astype(np.float32) * 0.1,
        std=(rng.random(n) * 0.05 + 0.01).astype(np.float32),
        label_names=labels,
        k=k,
        preprocessing=PreprocessConfig(
            input_size=(3, input_size, input_size), mean=(0.5,) * 3, std=(0.5,) * 3
        ),
        feature_names=[f"part {i}" for i in range(n)],
    )


@pytest.fixture(scope="session")
def qpm_dir(tmp_path_factory) -> Path:
    """A QPM checkpoint folder written by save_pretrained."""
    folder = tmp_path_factory.mktemp("qpm") / "model"
    make_model("qpm", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def qsenn_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qsenn") / "model"
    make_model("qsenn", seed=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def image_file(tmp_path_factory) -> Path:
    from PIL import Image

    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("images") / "bird.png"
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """40 real photographs (views of scikit-learn's sample photos) as PNG files in a folder."""
    from PIL import Image

    from export.onnx_validate import real_views, sample_photos

    folder = tmp_path_factory.mktemp("photos")
    for i, view in enumerate(real_views(sample_photos(), 40)):
        image = view.image if isinstance(view.image, Image.Image) else Image.fromarray(view.image)
        image.save(folder / f"{i:03d}.png")
    return folder
