"""Hostile command lines and overflowing checkpoints (issue #16, groups 8, 9 and 10): one line on
stderr and exit status 2, never a traceback, never NaN on stdout."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from qpm_zoo import CheckpointError, NonFiniteOutputError
from qpm_zoo.cli import main
from qpm_zoo.model import QPM


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ckpt(qpm_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(qpm_dir, tmp_path / "model"))


def _edit_tensors(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


# -- group 8: non-finite and absurd outputs -----------------------------------------------------
def _overflowing(folder: Path) -> None:
    """A head whose normalisation overflows float32 (mean and std are finite, the result not)."""

    def edit(tensors):
        tensors["head.mean"] = torch.full_like(tensors["head.mean"], -3e38)
        tensors["head.std"] = torch.full_like(tensors["head.std"], 1e-30)

    _edit_tensors(folder, edit)


def test_an_overflowing_head_is_an_error_not_nan(ckpt, image_file):
    _overflowing(ckpt)
    model = QPM.from_pretrained(ckpt)
    with pytest.raises(NonFiniteOutputError, match=r"bird\.png: the model computed non-finite"):
        model.predict(str(image_file))
    with pytest.raises(NonFiniteOutputError, match=r"^input\[0\] \(ndarray"):
        model.predict([np.zeros((8, 8, 3), np.uint8), str(image_file)], batch_size=1)


def test_the_command_exits_2_and_prints_no_json(capsys, ckpt, image_file):
    _overflowing(ckpt)
    code, out, err = run(capsys, "predict", ckpt, image_file, "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "non-finite" in err and "Traceback" not in err


def test_a_zero_std_is_refused_when_loading(ckpt):
    _edit_tensors(ckpt, lambda t: t["head.std"].__setitem__(2, 0.0))
    with pytest.raises(CheckpointError, match=r"'head\.std' holds 0\.0 at feature 2"):
        QPM.from_pretrained(ckpt)


# -- group 9: devices ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "device, message",
    [
        ("bogus", r"--device 'bogus': not a torch device"),
        ("cuda:99", r"--device cuda:99: (CUDA is not available|this machine has)"),
        ("meta", r"--device meta: use cpu, cuda\[:N\] or mps"),
    ],
)
def test_an_unusable_device_is_one_line(capsys, qpm_dir, image_file, device, message):
    code, out, err = run(capsys, "predict", qpm_dir, image_file, "--device", device)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert re.search(message, err), err


def test_device_with_onnx_is_refused(capsys, qpm_dir, image_file):
    code, _, err = run(capsys, "predict", qpm_dir, image_file, "--onnx", "--device", "cuda")
    assert code == 2 and "--device applies to the PyTorch model" in err


# -- group 10: folders and unwritable outputs ----------------------------------------------------
def test_a_folder_is_called_a_folder(capsys, qpm_dir, tmp_path):
    code, _, err = run(capsys, "predict", qpm_dir, tmp_path)
    assert code == 2 and "is a folder, not an image file" in err
    code, _, err = run(capsys, "explain", qpm_dir, "--image", tmp_path)
    assert code == 2 and "is a folder, not an image file" in err
    code, _, err = run(capsys, "explain", qpm_dir, tmp_path)
    assert code == 2 and "is a folder, not an image file or a class name" in err


def test_out_below_a_file_fails_before_any_work(capsys, qpm_dir, image_file, tmp_path):
    out = tmp_path / "notes.txt" / "figure.png"
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    code, stdout, err = run(capsys, "explain", qpm_dir, image_file, "--out", out)
    assert code == 2 and stdout == "" and "notes.txt is a file, so no folder can be made" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_fails_before_any_work(capsys, qpm_dir, image_file, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, stdout, err = run(capsys, "assignment", qpm_dir, "--out", folder / "a.png")
    finally:
        folder.chmod(0o700)
    assert code == 2 and stdout == "" and "permission denied" in err


def test_out_that_cannot_be_overwritten_fails_before_any_work(
    capsys, qpm_dir, image_file, tmp_path, monkeypatch
):
    target = tmp_path / "figure.png"
    target.write_bytes(b"")
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == target else real_access(p, mode)
    )
    code, stdout, err = run(capsys, "explain", qpm_dir, image_file, "--out", target)
    assert code == 2 and stdout == "" and "cannot be overwritten" in err


def test_json_output_is_valid_json(capsys, qpm_dir, image_file):
    code, out, _ = run(capsys, "predict", qpm_dir, image_file, "--json")
    assert code == 0
    json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))
