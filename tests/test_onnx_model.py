"""QPMOnnx: the same predictions and explanations as QPM, strict loading, quiet providers, no torch."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from test_torch_free import run_without_torch

from export.onnx_export import export_checkpoint
from export.onnx_validate import sample_photos
from qpm_zoo import CheckpointError, InputError, QPMConfig, QPMOnnx
from qpm_zoo.model import QPM

PHOTOS = [np.asarray(p.image) for p in sample_photos()]


def _exported_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    assert export_checkpoint(dest).written
    return dest


@pytest.fixture(scope="module")
def qpm_onnx_dir(qpm_dir, tmp_path_factory) -> Path:
    """The exported QPM checkpoint; test_onnx_export's command test leaves the same one in the
    session's temp dir, which is reused when present (exports take seconds)."""
    shared = tmp_path_factory.getbasetemp() / "onnx-exported-qpm"
    if (shared / "model.onnx").is_file():
        return shared
    return _exported_copy(qpm_dir, tmp_path_factory.mktemp("onnx") / "qpm")


@pytest.fixture(scope="module")
def qsenn_onnx_dir(qsenn_dir, tmp_path_factory) -> Path:
    return _exported_copy(qsenn_dir, tmp_path_factory.mktemp("onnx") / "qsenn")


def _assert_same_prediction(a, b, rel: float = 1e-4) -> None:
    assert (a.label, a.class_index) == (b.label, b.class_index)
    assert [s.label for s in a.top_k] == [s.label for s in b.top_k]
    ea, eb = a.explanation, b.explanation
    assert [f.index for f in ea.features] == [f.index for f in eb.features]
    scale = max(abs(f.contribution) for f in eb.features) or 1.0
    for fa, fb in zip(ea.features, eb.features):
        assert abs(fa.contribution - fb.contribution) <= rel * scale, (fa, fb)
        assert fa.shared_with == fb.shared_with
    assert a.logit == pytest.approx(b.logit, rel=rel, abs=rel * scale)
    # Faithfulness holds for the ONNX path too: the logit is the sum of what the explanation lists.
    assert ea.logit == pytest.approx(ea.total, abs=1e-5)


@pytest.mark.parametrize("kind", ["qpm", "qsenn"])
def test_same_predictions_and_explanations_as_torch(kind, qpm_onnx_dir, qsenn_onnx_dir, image_file):
    folder = qpm_onnx_dir if kind == "qpm" else qsenn_onnx_dir
    torch_model, onnx_model = QPM.from_pretrained(folder), QPMOnnx.from_pretrained(folder)
    images = [image_file, *PHOTOS]
    for a, b in zip(onnx_model.predict(images, top_k=3), torch_model.predict(images, top_k=3)):
        _assert_same_prediction(a, b)
    if kind == "qsenn":  # signed weights and a bias survive the export
        assert (
            any(f.weight < 0 for f in onnx_model.explain_class(0).features)
            or onnx_model.class_bias.any()
        )
    assert onnx_model.explain_class("Blue Jay") == torch_model.explain_class("Blue Jay")
    assert onnx_model.compare("Cardinal", 2) == torch_model.compare("Cardinal", 2)


def test_feature_maps_match_torch_and_batch_is_dynamic(qpm_onnx_dir):
    torch_model, onnx_model = (
        QPM.from_pretrained(qpm_onnx_dir),
        QPMOnnx.from_pretrained(qpm_onnx_dir),
    )
    pixels = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    got = onnx_model.forward_arrays(pixels, with_maps=True)
    with torch.inference_mode():
        ref = torch_model.forward_all(torch.from_numpy(pixels))
    assert got.feature_maps.shape == tuple(ref.feature_maps.shape) == (3, 6, 2, 2)
    np.testing.assert_allclose(got.feature_maps, ref.feature_maps.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.logits, ref.logits.numpy(), atol=1e-4)
    assert onnx_model.forward_arrays(pixels).feature_maps is None  # not fetched unless asked
    single = onnx_model.forward_arrays(pixels[:1])
    np.testing.assert_allclose(single.features, got.features[:1], atol=1e-5)


def test_default_providers_fall_back_to_cpu_quietly(qpm_onnx_dir, capfd):
    model = QPMOnnx.from_pretrained(qpm_onnx_dir)  # asks for CUDA first
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert model.providers[-1] == "CPUExecutionProvider"
    assert set(model.providers) <= {"CUDAExecutionProvider", "CPUExecutionProvider"}
    assert "providers=" in repr(model)
    cpu = QPMOnnx.from_pretrained(qpm_onnx_dir, providers=[("CPUExecutionProvider", {})])
    assert cpu.providers == ["CPUExecutionProvider"]


def test_verbose_shows_why_cuda_did_not_start(qpm_onnx_dir, capfd):
    model = QPMOnnx.from_pretrained(qpm_onnx_dir, verbose=True)
    _, err = capfd.readouterr()
    if "CUDAExecutionProvider" in model.providers:
        pytest.skip("CUDA runs here, so there is no fallback to report")
    assert "CUDA" in err
    QPMOnnx.from_pretrained(qpm_onnx_dir)  # and quiet again by default
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(
    "providers, message",
    [
        (["CUDAExecutionProvidr"], "unknown onnxruntime provider 'CUDAExecutionProvidr'"),
        ([], "must not be empty"),
        ("CPUExecutionProvider", "must be a list"),
        ([("CPUExecutionProvider",)], "(name, options dict)"),
    ],
)
def test_bad_providers_are_clear_errors(qpm_onnx_dir, providers, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        QPMOnnx.from_pretrained(qpm_onnx_dir, providers=providers)


def test_wrong_image_size_for_the_fixed_size_export(qpm_onnx_dir):
    model = QPMOnnx.from_pretrained(qpm_onnx_dir)
    with pytest.raises(
        InputError, match=r"shape \(2, 3, 32, 32\).*\[batch, 3, 64, 64\] \(fixed size\)"
    ):
        model.forward_arrays(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="floating point"):
        model.forward_arrays(np.zeros((1, 3, 64, 64), np.int64))
    # predict() resizes any image to the export's size
    assert model.predict(np.zeros((17, 300, 3), np.uint8)).label in model.label_names


# -- strict loading ------------------------------------------------------------------------------
def _edit_config(folder: Path, **onnx_changes) -> None:
    """Change config.json's onnx entry on disk, past the validation a QPMConfig would apply."""
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["onnx"].update(onnx_changes)
    path.write_text(json.dumps(data))


def test_checkpoint_without_an_export(qsenn_dir, qpm_onnx_dir, tmp_path):
    with pytest.raises(
        CheckpointError, match=r"config.json: has no 'onnx' entry.*python -m export onnx"
    ):
        QPMOnnx.from_pretrained(qsenn_dir)
    folder = shutil.copytree(qpm_onnx_dir, tmp_path / "m")
    (folder / "model.onnx").unlink()
    with pytest.raises(
        CheckpointError, match=r"describes an ONNX export 'model.onnx'.*has no such file"
    ):
        QPMOnnx.from_pretrained(folder)


def test_checksum_mismatch_names_the_file(qpm_onnx_dir, tmp_path):
    folder = shutil.copytree(qpm_onnx_dir, tmp_path / "m")
    with open(folder / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(
        CheckpointError, match=r"model.onnx: SHA-256 .* does not match 'onnx.sha256'"
    ):
        QPMOnnx.from_pretrained(folder)


def test_damaged_export_with_matching_record_is_a_checkpoint_error(qpm_onnx_dir, tmp_path):
    folder = shutil.copytree(qpm_onnx_dir, tmp_path / "m")
    data = (folder / "model.onnx").read_bytes()[:5000]
    (folder / "model.onnx").write_bytes(data)
    _edit_config(folder, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(CheckpointError, match="onnxruntime cannot load it"):
        QPMOnnx.from_pretrained(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"labels": ["a", "b", "c", "d"]},
            r"output 'logits' has shape \[batch, 5\].*'num_classes'.*\[batch, 4\]",
        ),
        ({"n": 7}, r"output 'features' has shape \[batch, 6\].*'selected_features'.*\[batch, 7\]"),
        (
            {"input_size": 96},
            r"input 'pixel_values' has shape \[batch, 3, 64, 64\].*\[batch, 3, 96, 96\]",
        ),
    ],
)
def test_export_that_disagrees_with_config(qpm_onnx_dir, tmp_path, change, message):
    """Another model's config.json beside this export: caught by the graph's shapes, not by luck."""
    folder = tmp_path / "other"
    make_model("qpm", seed=5, **change).save_pretrained(folder)
    shutil.copy(qpm_onnx_dir / "model.onnx", folder / "model.onnx")
    record = QPMConfig.load(qpm_onnx_dir / "config.json").onnx
    size = change.get("input_size", 64)
    config = QPMConfig.load(folder / "config.json")
    config.replace(onnx=record.model_copy(update={"input_size": (3, size, size)})).save(
        folder / "config.json"
    )
    with pytest.raises(CheckpointError, match=message):
        QPMOnnx.from_pretrained(folder)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"input_size": [3, 32, 32]},
            r"'onnx.input_size' is \[3, 32, 32\] but 'preprocessing.input_size'",
        ),
        (
            {"file": "../model.onnx"},
            r"config.json: onnx.file: must be a relative path inside the checkpoint",
        ),
        ({"sha256": "abc"}, r"config.json: onnx.sha256: must be 64 lowercase hex digits"),
        (
            {"dtype": "int8"},
            r"config.json: onnx.dtype: must be 'float32' or 'float16', got str 'int8'",
        ),
        ({"feature_map_size": [3, 3]}, r"'onnx.feature_map_size' says \[3, 3\]"),
    ],
)
def test_bad_onnx_record_names_the_field(qpm_onnx_dir, tmp_path, changes, message):
    folder = shutil.copytree(qpm_onnx_dir, tmp_path / "m")
    _edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        QPMOnnx.from_pretrained(folder)


# -- without torch -------------------------------------------------------------------------------
def test_onnx_path_runs_without_torch(qpm_onnx_dir, image_file):
    result = run_without_torch(
        f"""
        import json, sys
        from qpm_zoo import QPMOnnx, cli

        model = QPMOnnx.from_pretrained({str(qpm_onnx_dir)!r})
        pred = model.predict({str(image_file)!r})
        maps = model.forward_arrays(model.preprocessor({str(image_file)!r})[0], with_maps=True).feature_maps
        assert maps.shape == (1, 6, 2, 2), maps.shape
        argv = ["predict", {str(qpm_onnx_dir)!r}, {str(image_file)!r}, "--onnx", "--json"]
        assert cli.main(argv + ["--providers", "CUDAExecutionProvider,CPUExecutionProvider"]) == 0
        assert not any(m.split(".")[0] in ("torch", "timm") for m in sys.modules), "torch was imported"
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expected = QPM.from_pretrained(qpm_onnx_dir).predict(image_file)
    got = QPMOnnx.from_pretrained(qpm_onnx_dir).predict(image_file)
    assert json.loads(result.stdout) == got.to_dict()
    _assert_same_prediction(got, expected)


def test_cli_onnx_options(capsys, qpm_onnx_dir, image_file):
    from qpm_zoo.cli import main

    assert (
        main(["predict", str(qpm_onnx_dir), str(image_file), "--providers", "CPUExecutionProvider"])
        == 2
    )
    assert "--providers, --variant and --verbose apply to --onnx only" in capsys.readouterr().err
    assert (
        main(["predict", str(qpm_onnx_dir), str(image_file), "--onnx", "--providers", "TPU"]) == 2
    )
    assert "unknown onnxruntime provider 'TPU'" in capsys.readouterr().err


def test_missing_onnxruntime_is_a_clear_error(qpm_onnx_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
            import sys
            sys.modules["onnxruntime"] = None  # what an environment without it looks like to imports
            from qpm_zoo import MissingDependencyError, QPMOnnx
            try:
                QPMOnnx.from_pretrained({str(qpm_onnx_dir)!r})
            except MissingDependencyError as e:
                print(e)
            """
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'qpm-zoo[onnx]'" in result.stdout


def test_qpmonnx_cannot_save_and_leaves_the_checkpoint_alone(qpm_onnx_dir, tmp_path):
    folder = shutil.copytree(qpm_onnx_dir, tmp_path / "m")
    model = QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])
    with pytest.raises(CheckpointError, match="QPMOnnx cannot write a checkpoint"):
        model.save_pretrained(folder)
    assert (folder / "config.json").is_file()
