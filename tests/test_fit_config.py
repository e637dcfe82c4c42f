"""The training config: strict validation before any training, and a recipe that round-trips."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training.cli import main
from training.config import FitConfig, FitConfigError
from training.data import check_dataset_files

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_parse_and_round_trip(path):
    config = FitConfig.load(path)
    again = FitConfig.from_dict(config.to_dict(), source="recipe", base_dir=path.parent)
    assert again.to_dict() == config.to_dict()


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {
    "data": {"name": "concepts", "concepts": {"num_classes": 4, "train_size": 40, "test_size": 20}},
    "model": {"backbone": "test_resnet", "input_size": 32},
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dense": {"epochz": 3}}, r"unknown field\(s\) \['epochz'\] in 'dense'"),
        (
            {"dense": {"epochs": "three"}},
            r"field 'dense\.epochs' must be an integer, got str 'three'",
        ),
        ({"assignment": {"n": 4, "k": 5}}, r"field 'assignment\.k' is 5, more than n=4"),
        ({"finetune": {"dropout": 1.5}}, r"field 'finetune\.dropout' must be in \[0, 1\)"),
        ({"model_type": "qspm"}, r"field 'model_type' must be one of \['qpm', 'qsenn'\]"),
        ({"optimiser": "adam"}, r"unknown field\(s\) \['optimiser'\] at the top level"),
        ({"data": {"name": "imagefolder", "root": "/nonexistent/birds"}}, r"/nonexistent/birds"),
    ],
)
def test_bad_configs_fail_before_training(tmp_path, capsys, change, message):
    path = _write(tmp_path, {**BASE, **change})
    out = tmp_path / "run"
    assert main(["fit", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training fit: error: ") and err.count("\n") == 1
    assert str(path) in err or "/nonexistent" in err
    assert re.search(message, err), err
    assert not out.exists(), "nothing may be written before the config is valid"


def test_the_command_line_entry_point(tmp_path):
    path = _write(tmp_path, {**BASE, "dense": {"epochz": 1}})
    result = subprocess.run(
        [sys.executable, "-m", "training", "fit", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2 and "epochz" in result.stderr and "Traceback" not in result.stderr


def test_empty_class_folder_is_named(tmp_path):
    from PIL import Image

    root = tmp_path / "data"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "train" / "cat" / "a.png")
    Image.new("RGB", (8, 8)).save(root / "test" / "cat" / "a.png")
    Image.new("RGB", (8, 8)).save(root / "test" / "dog" / "a.png")
    config = FitConfig.load(
        _write(tmp_path, {**BASE, "data": {"name": "imagefolder", "root": str(root)}})
    )
    with pytest.raises(ValueError, match=r"train/dog"):
        check_dataset_files(config.data)


def test_overrides_use_dotted_keys_and_are_validated(tmp_path):
    path = _write(tmp_path, BASE)
    config = FitConfig.load(path, {"dense.epochs": 2, "assignment.n": 8})
    assert config.dense.epochs == 2 and config.assignment.n == 8
    with pytest.raises(FitConfigError, match="dense.lr' must be positive"):
        FitConfig.load(path, {"dense.lr": -1})


def test_fingerprint_changes_only_with_its_sections(tmp_path):
    path = _write(tmp_path, BASE)
    a = FitConfig.load(path)
    b = FitConfig.load(path, {"finetune.epochs": 7, "runtime.num_workers": 2})
    assert a.fingerprint("data", "model", "dense") == b.fingerprint("data", "model", "dense")
    assert a.fingerprint("finetune") != b.fingerprint("finetune")
    assert a.fingerprint("runtime") != b.fingerprint(
        "runtime"
    )  # runtime is never a stage's section


def test_fingerprint_ignores_fields_at_their_default(tmp_path):
    """A field a release adds with a default is, for older configs, a field left at it: their
    finished stages must stay valid (spelling a default out is the same config)."""
    path = _write(tmp_path, BASE)
    plain = FitConfig.load(path)
    spelled = FitConfig.load(
        path,
        {"assignment.redundancy_weight": 1.0, "model.freeze_backbone": False, "dense.gamma": 0.4},
    )
    for section in ("data", "model", "dense", "assignment"):
        assert plain.fingerprint(section) == spelled.fingerprint(section)
    changed = FitConfig.load(path, {"assignment.redundancy_weight": 2.0})
    assert plain.fingerprint("assignment") != changed.fingerprint("assignment")
    adapter = FitConfig.load(path, {"model.adapter": {"kind": "conv1x1", "features": 8}})
    assert plain.fingerprint("model") != adapter.fingerprint("model")


def test_extends_merges_section_by_section(tmp_path):
    base = _write(tmp_path, {**BASE, "dense": {"epochs": 3, "lr": 0.1}, "seed": 1})
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {base.name}\ndense:\n  epochs: 5\nmodel_type: qsenn\n")
    config = FitConfig.load(child, {"dense.lr": 0.2})
    assert (config.dense.epochs, config.dense.lr, config.seed) == (5, 0.2, 1)
    assert config.model_type == "qsenn" and config.model.backbone == "test_resnet"
    toml = tmp_path / "child.toml"
    toml.write_text(f'extends = "{base.name}"\n[assignment]\nn = 8\n')
    assert FitConfig.load(toml).assignment.n == 8


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "extends: missing.yaml\n",
            r"missing\.yaml: no such config file \(extended by .*a\.yaml\)",
        ),
        ("extends: a.yaml\n", r"a\.yaml: 'extends' forms a cycle"),
        ("extends: 3\n", r"field 'extends' must be the path of another config file"),
        ("dense: [1\n", r"a\.yaml: not valid YAML at line 2, column 1"),
        ("- 1\n", r"a\.yaml: the top level must be a mapping"),
    ],
)
def test_bad_config_files_are_named(tmp_path, text, message):
    path = tmp_path / "a.yaml"
    path.write_text(text)
    with pytest.raises(FitConfigError, match=message):
        FitConfig.load(path)


def test_command_line_overrides(tmp_path, capsys):
    path = _write(tmp_path, BASE)
    out = tmp_path / "run"
    assert main(["fit", str(path), "--out", str(out), "--set", "dense.epochs=-1"]) == 2
    err = capsys.readouterr().err
    assert "field 'dense.epochs' must not be negative, got -1" in err and not out.exists()
    assert main(["fit", str(path), "--out", str(out), "--set", "dense.epochs"]) == 2
    assert "--set expects KEY=VALUE, got 'dense.epochs'" in capsys.readouterr().err
