"""An ONNX export only loads with the config.json whose head it was exported with (issue 16,
group 6): a graph from another checkpoint, with or without its record, is a CheckpointError."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model

from export.onnx_export import export_checkpoint
from qpm_zoo import CheckpointError, QPMConfig, QPMOnnx
from qpm_zoo.model import QPM
from qpm_zoo.onnx_model import ASSIGNMENT_KEY, HEAD_KEY, assignment_fingerprint


def _exported(model: QPM, folder: Path) -> Path:
    model.save_pretrained(folder)
    assert export_checkpoint(folder, images=[]).written
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Checkpoints A and B (same classes and n, other assignment and weights) and A' (A's
    assignment, other μ and σ), each exported."""
    root = tmp_path_factory.mktemp("head-check")
    a = make_model("qpm", seed=0)
    b = make_model("qpm", seed=7)
    renormalised = make_model("qpm", seed=0)
    renormalised.head.mean.data += 0.5
    return (
        _exported(a, root / "a"),
        _exported(b, root / "b"),
        _exported(renormalised, root / "a-renormalised"),
    )


def _edit_record(folder: Path, **changes) -> None:
    data = json.loads((folder / "config.json").read_text())
    data["onnx"].update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def test_exports_carry_the_fingerprints_of_their_head(pair):
    a, b, _ = pair
    for folder in (a, b):
        config = QPMConfig.load(folder / "config.json")
        model = QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])
        metadata = model.session.get_modelmeta().custom_metadata_map
        assert config.onnx.assignment_sha256 == assignment_fingerprint(config)
        assert metadata[ASSIGNMENT_KEY] == config.onnx.assignment_sha256
        assert metadata[HEAD_KEY] == config.onnx.head_sha256
    assert QPMConfig.load(a / "config.json").onnx.head_sha256 != (
        QPMConfig.load(b / "config.json").onnx.head_sha256
    )


def test_another_checkpoints_export_with_its_record_copied_is_refused(pair, tmp_path):
    a, b, _ = pair
    folder = shutil.copytree(a, tmp_path / "m")
    shutil.copy(b / "model.onnx", folder / "model.onnx")
    _edit_record(folder, **json.loads((b / "config.json").read_text())["onnx"])
    # Without the check this loads, and B's head gives logits that A's explanations do not sum to.
    with pytest.raises(CheckpointError, match=r"'onnx.assignment_sha256' .* another checkpoint"):
        QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("other", ["b", "a-renormalised"])
def test_another_graph_under_this_record_is_refused(pair, tmp_path, other):
    """Only the checksum updated: the graph's own fingerprints still say whose head it holds
    (for A', the same assignment with other μ and σ)."""
    a, b, renormalised = pair
    source = b if other == "b" else renormalised
    folder = shutil.copytree(a, tmp_path / "m")
    shutil.copy(source / "model.onnx", folder / "model.onnx")
    _edit_record(folder, sha256=hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest())
    key = ASSIGNMENT_KEY if other == "b" else HEAD_KEY
    with pytest.raises(CheckpointError, match=rf"model.onnx: the graph's head fingerprint '{key}'"):
        QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])


def test_an_export_without_fingerprints_loads_with_a_warning(pair, tmp_path, caplog):
    a, _, _ = pair
    folder = shutil.copytree(a, tmp_path / "m")
    data = json.loads((folder / "config.json").read_text())
    del data["onnx"]["assignment_sha256"], data["onnx"]["head_sha256"]
    (folder / "config.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="qpm_zoo.onnx_model"):
        model = QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])
    assert "no head fingerprint" in caplog.text
    pixels = np.zeros((1, 3, 64, 64), np.float32)
    np.testing.assert_allclose(
        model.forward_arrays(pixels).logits,
        QPMOnnx.from_pretrained(a, providers=["CPUExecutionProvider"])
        .forward_arrays(pixels)
        .logits,
    )
