"""The checkpoint format: round trips, and strict loading that names the file and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from safetensors.torch import load_file, save_file

from qpm_zoo import CheckpointError, ConfigError, QPMConfig
from qpm_zoo.config import FORMAT_VERSION
from qpm_zoo.model import QPM


@pytest.fixture
def ckpt(qpm_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the QPM checkpoint that a test may damage."""
    return Path(shutil.copytree(qpm_dir, tmp_path / "model"))


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_tensors(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize("fixture", ["qpm_dir", "qsenn_dir"])
def test_round_trip_gives_identical_outputs(fixture, request):
    folder = request.getfixturevalue(fixture)
    model = QPM.from_pretrained(folder)
    again_dir = folder.parent / "again"
    model.save_pretrained(again_dir)
    again = QPM.from_pretrained(again_dir)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        a, b = model.forward_all(x), again.forward_all(x)
    for left, right in zip(a, b):
        assert torch.equal(left, right)
    assert again.config == model.config
    assert not again.training
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}


def test_saved_model_matches_the_model_in_memory(tmp_path):
    model = make_model("qsenn", seed=5)
    model.save_pretrained(tmp_path / "m")
    loaded = QPM.from_pretrained(tmp_path / "m")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert loaded.config.model_type == "qsenn"
    assert loaded.head.bias is not None


def test_config_json_is_plain_and_complete(qpm_dir):
    data = json.loads((qpm_dir / "config.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["model_type"] == "qpm"
    assert data["backbone"]["name"] == "test_resnet"
    assert len(data["selected_features"]) == 6
    assert all(len(row) == data["k"] for row in data["assignment"]["class_features"])
    assert set(data["preprocessing"]) == {
        "input_size",
        "interpolation",
        "crop_mode",
        "crop_pct",
        "mean",
        "std",
    }
    assert QPMConfig.from_dict(data).to_dict() == data


def test_folder_without_config(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: not found"):
        QPM.from_pretrained(ckpt)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        QPM.from_pretrained(tmp_path / "absent")


def test_folder_without_weights(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not found"):
        QPM.from_pretrained(ckpt)


def test_missing_tensor(ckpt):
    _edit_tensors(ckpt, lambda t: t.pop("head.mean"))
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors.*1 missing tensor\(s\): head\.mean"
    ):
        QPM.from_pretrained(ckpt)


def test_unexpected_tensor(ckpt):
    _edit_tensors(ckpt, lambda t: t.update({"head.extra": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected tensor\(s\): head\.extra"):
        QPM.from_pretrained(ckpt)


def test_shape_that_disagrees_with_config(ckpt):
    _edit_tensors(ckpt, lambda t: t.update({"head.std": torch.ones(7)}))
    with pytest.raises(CheckpointError, match=r"'head\.std' has shape \(7,\).*expects \(6,\)"):
        QPM.from_pretrained(ckpt)


def test_config_with_more_classes_than_the_weights(ckpt):
    def add_class(d):
        d["num_classes"] += 1
        d["label_names"].append("Extra")
        d["assignment"]["class_features"].append([0, 1])

    _edit_config(ckpt, add_class)
    with pytest.raises(
        CheckpointError, match=r"'head\.weight' has shape \(5, 6\).*expects \(6, 6\)"
    ):
        QPM.from_pretrained(ckpt)


def test_weights_that_disagree_with_the_assignment(ckpt):
    def swap(d):
        rows = d["assignment"]["class_features"]
        rows[0], rows[1] = rows[1], rows[0]

    _edit_config(ckpt, swap)
    with pytest.raises(
        CheckpointError, match=r"'head\.weight' disagrees with config\.json 'assignment'"
    ):
        QPM.from_pretrained(ckpt)


def test_truncated_weights(ckpt):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file"):
        QPM.from_pretrained(ckpt)


def test_pickle_instead_of_safetensors_is_refused(ckpt):
    path = ckpt / "model.safetensors"
    torch.save(QPM.from_pretrained(ckpt).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file"):
        QPM.from_pretrained(ckpt)


def test_config_from_a_newer_format(ckpt):
    _edit_config(ckpt, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ConfigError, match=rf"format {FORMAT_VERSION + 1}.*Upgrade"):
        QPM.from_pretrained(ckpt)


def test_unknown_config_field(ckpt):
    _edit_config(ckpt, lambda d: d.update(num_clases=5))
    with pytest.raises(ConfigError, match=r"config\.json: unknown field\(s\) \['num_clases'\]"):
        QPM.from_pretrained(ckpt)


def test_wrong_field_type(ckpt):
    _edit_config(ckpt, lambda d: d.update(k="2"))
    with pytest.raises(ConfigError, match=r"config\.json: k: must be an integer, got str '2'"):
        QPM.from_pretrained(ckpt)


def test_qpm_class_with_the_wrong_number_of_features(ckpt):
    def add_feature(d):
        row = d["assignment"]["class_features"][2]
        row.append(next(j for j in range(6) if j not in row))

    _edit_config(ckpt, add_feature)
    with pytest.raises(
        ConfigError,
        match=r"config\.json: assignment\.class_features\[2\]: has 3 features.*exactly k=2",
    ):
        QPM.from_pretrained(ckpt)


def test_invalid_json(ckpt):
    (ckpt / "config.json").write_text('{"format_version": 1,')
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        QPM.from_pretrained(ckpt)


def test_nan_weights_are_refused(ckpt):
    def poison(t):
        t["head.mean"] = t["head.mean"].clone()
        t["head.mean"][0] = float("nan")

    _edit_tensors(ckpt, poison)
    with pytest.raises(CheckpointError, match=r"'head\.mean' holds NaN"):
        QPM.from_pretrained(ckpt)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    """A crash while writing weights leaves no checkpoint folder and no temp entry behind."""
    import safetensors.torch

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        make_model().save_pretrained(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_leaves_the_old_checkpoint_intact(qpm_dir, tmp_path, monkeypatch):
    import safetensors.torch

    folder = Path(shutil.copytree(qpm_dir, tmp_path / "model"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        make_model("qsenn", seed=3).save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_saving_another_model_drops_the_old_ones_model_files(qpm_dir, tmp_path):
    """README.md, metrics.json and exports describe one model: they do not survive a save of
    another one into the folder; files that are not model files (a run's notes) do."""
    folder = Path(shutil.copytree(qpm_dir, tmp_path / "model"))
    (folder / "metrics.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"old export")
    (folder / "notes.txt").write_text("kept")
    make_model("qsenn", seed=3).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]
    assert "Q-SENN" in (folder / "README.md").read_text()
    assert QPM.from_pretrained(folder).config.model_type == "qsenn"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_write_checkpoint_keeps_what_it_is_asked_to(qpm_dir, tmp_path):
    from qpm_zoo.checkpoint import write_checkpoint

    folder = Path(shutil.copytree(qpm_dir, tmp_path / "model"))
    (folder / "metrics.json").write_text('{"accuracy": 1}')
    config = QPMConfig.load(folder / "config.json")
    write_checkpoint(
        folder,
        config.replace(metrics={"x": 1.0}),
        files={"sub/extra.bin": b"1"},
        keep=["metrics.json", "model.safetensors"],
    )
    assert (folder / "metrics.json").read_text() == '{"accuracy": 1}'
    assert (folder / "sub" / "extra.bin").read_bytes() == b"1"
    assert QPM.from_pretrained(folder).config.metrics == {"x": 1.0}
    with pytest.raises(CheckpointError, match="relative path"):
        write_checkpoint(folder, config, files={"../outside": b""})


def test_from_assignment_keeps_backbone_weights_and_statistics():
    model = make_model(seed=7)
    assert model.head.mean.requires_grad is False
    np.testing.assert_array_equal(model.head.weight.numpy(), model.config.weight_matrix())
    assert model.config.k == 2
    assert all(len(r) == 2 for r in model.config.assignment.class_features)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["preprocessing"].update(std=[0.5, 0.0, 0.5]),
            r"config\.json: preprocessing\.std: must hold 3 positive numbers, got \[0\.5, 0\.0, 0\.5\]",
        ),
        (
            lambda d: d["preprocessing"].update(colour="rgb"),
            r"config\.json: unknown field\(s\) \['colour'\] in 'preprocessing'",
        ),
        (lambda d: d.pop("label_names"), r"config\.json: label_names: required field is missing"),
        (
            lambda d: d.update(label_names=d["label_names"][:-1]),
            r"config\.json: label_names: has 4 names for num_classes=5",
        ),
        (
            lambda d: d["assignment"]["class_features"][0].__setitem__(1, 9),
            r"config\.json: assignment\.class_features\[0\]: holds an index outside 0\.\.5",
        ),
        (
            lambda d: d["selected_features"].__setitem__(0, True),
            r"config\.json: selected_features\[0\]: must be an integer, got boolean true",
        ),
        (
            lambda d: d.update(model_type="qpn"),
            r"config\.json: model_type: must be 'qpm' or 'qsenn', got str 'qpn'",
        ),
        (
            lambda d: d.update(backbone=[]),
            r"config\.json: backbone: must be a JSON object, got list",
        ),
    ],
)
def test_bad_config_is_one_line_naming_file_field_and_value(ckpt, edit, message):
    _edit_config(ckpt, edit)
    with pytest.raises(ConfigError, match=message) as caught:
        QPMConfig.load(ckpt / "config.json")
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_constructing_a_bad_config_part_is_a_config_error():
    from qpm_zoo import PreprocessConfig

    with pytest.raises(
        ConfigError, match=r"^PreprocessConfig: crop_pct: must be in \(0, 1\], got 0\.0$"
    ):
        PreprocessConfig(crop_pct=0.0)
    config = make_model().config
    with pytest.raises(
        ConfigError, match=r"^QPMConfig: k: is 7, more than the 6 selected features$"
    ):
        config.replace(k=7)


def test_provenance_round_trips_and_is_absent_by_default(ckpt):
    from qpm_zoo.config import Provenance

    config = QPMConfig.load(ckpt / "config.json")
    assert config.provenance is None and "provenance" not in config.to_dict()
    provenance = Provenance(
        source="authors-release",
        file="qpm_cub.pth",
        sha256="0" * 64,
        paper="QPM (ICLR 2025)",
        reported_metrics={"accuracy": 0.85},
        note="licence: not stated",
    )
    config.replace(provenance=provenance).save(ckpt / "config.json")
    again = QPMConfig.load(ckpt / "config.json")
    assert again.provenance == provenance
    assert json.loads((ckpt / "config.json").read_text())["provenance"]["file"] == "qpm_cub.pth"


def test_every_class_loads_through_the_one_from_pretrained(qpm_dir):
    from qpm_zoo import GlobalExplainer

    model = QPM.from_pretrained(qpm_dir, map_location="cpu")
    explainer = GlobalExplainer.from_pretrained(qpm_dir)
    assert explainer.config == model.config
    with pytest.raises(TypeError, match="unexpected keyword argument 'map_locaton'"):
        QPM.from_pretrained(qpm_dir, map_locaton="cpu")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        GlobalExplainer.from_pretrained(qpm_dir / "missing")
