"""`python -m training calibrate` and the held-out calibration split of the data config: where
the images come from (never the training or test images), the command's splits and errors."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
from conftest import make_model
from recipes import TINY

from qpm_zoo.checkpoint import write_checkpoint
from qpm_zoo.config import QPMConfig
from training.cli import main
from training.config import FitConfig
from training.data import DataConfig, build_datasets
from training.data.build import _held_out
from training.errors import DataConfigError, FitConfigError

CLASSES = [f"class {c}" for c in range(5)]


def _data(**changes) -> dict:
    data = copy.deepcopy(TINY["data"])
    data["concepts"].update(train_size=60, test_size=30)
    data.update(changes)
    return data


def test_concepts_calibrate_on_a_generated_split_of_their_own():
    plain = build_datasets(DataConfig.from_dict(_data(), "t.yaml"))
    splits = build_datasets(DataConfig.from_dict(_data(calibration=20), "t.yaml"))
    assert plain.calibration is None and len(splits.calibration) == 20
    assert splits.calibration_source == "generated (a split of its own)"
    assert len(splits.train) == 60 and len(splits.test) == 30  # training data unchanged
    assert np.array_equal(np.asarray(splits.train.image(0)), np.asarray(plain.train.image(0)))
    image = np.asarray(splits.calibration.image(0))
    for other in (splits.train, splits.test):
        assert not np.array_equal(image, np.asarray(other.image(0)))
    assert splits.calibration.class_counts().tolist() == [4] * 5


def test_held_out_images_come_from_what_training_does_not_use():
    full = build_datasets(DataConfig.from_dict(_data(), "t.yaml")).train
    keys = {i: s for i, s in enumerate(full.samples)}  # concept samples are their indices
    # with train_subset: the images it leaves out; training is the same as without calibration
    cfg = DataConfig.from_dict(_data(train_subset=30, calibration=20), "t.yaml")
    train = build_datasets(DataConfig.from_dict(_data(train_subset=30), "t.yaml")).train
    calibration, kept, source = _held_out(cfg, full, train)
    assert kept is train and source == "training images not in train_subset"
    assert not set(calibration.samples) & set(train.samples) and len(calibration) == 20
    # without: carved out first, class-stratified, and training uses the rest
    cfg = DataConfig.from_dict(_data(calibration=15), "t.yaml")
    calibration, rest, source = _held_out(cfg, full, full)
    assert source == "carved from the training images" and len(rest) == 45
    assert sorted(calibration.samples + rest.samples) == sorted(keys.values())
    assert calibration.class_counts().tolist() == [3] * 5
    with pytest.raises(DataConfigError, match="train_subset leaves only 30 training images"):
        _held_out(DataConfig.from_dict(_data(train_subset=30, calibration=31), "t"), full, train)


def test_the_fit_config_records_the_conformal_section_only_when_it_is_used():
    plain = FitConfig.from_dict(TINY)
    assert "conformal" not in plain.to_dict() and "calibration" not in plain.to_dict()["data"]
    config = FitConfig.from_dict({**TINY, "data": _data(calibration=20)})
    assert config.to_dict()["conformal"] == {
        "coverage": [0.9, 0.95],
        "score": "lac",
        "raps_lambda": 0.01,
        "raps_k_reg": 5,
    }
    with pytest.raises(FitConfigError, match="conformal.coverage"):
        FitConfig.from_dict({**TINY, "conformal": {"coverage": [0.9, 1.2]}})
    # the stages before `calibrate` keep their keys when the training images stay the same
    sections = ("seed", "data", "model", "dense")
    assert plain.fingerprint(*sections) == FitConfig.from_dict(
        {**TINY, "data": {**TINY["data"], "calibration": 20}}
    ).fingerprint(*sections)
    fmnist = {**TINY, "data": {"name": "fashion_mnist", "root": "/nonexistent"}}
    carved = {**fmnist, "data": {**fmnist["data"], "calibration": 20}}
    assert FitConfig.from_dict(fmnist).fingerprint(*sections) != FitConfig.from_dict(
        carved
    ).fingerprint(*sections)
    remainder = {"train_subset": 100}
    assert FitConfig.from_dict({**fmnist, "data": {**fmnist["data"], **remainder}}).fingerprint(
        *sections
    ) == FitConfig.from_dict({**carved, "data": {**carved["data"], **remainder}}).fingerprint(
        *sections
    )
    from training.pipeline import FitRun

    stages = [s.name for s in FitRun(config, "/nonexistent").stages()]
    assert stages[-1] == "calibrate" and "calibrate" not in [
        s.name for s in FitRun(plain, "/nonexistent").stages()
    ]


@pytest.fixture(scope="module")
def recipe_model(tmp_path_factory):
    """A checkpoint (random weights) whose training recipe is the tiny concept data."""
    folder = tmp_path_factory.mktemp("calibrate") / "model"
    make_model(labels=CLASSES, n=6, k=2, input_size=48).save_pretrained(folder)
    recipe = copy.deepcopy(TINY)
    recipe["data"] = _data()
    recipe["runtime"]["device"] = "cpu"
    config = QPMConfig.load(folder / "config.json")
    config = config.replace(training=FitConfig.from_dict(recipe).to_dict())
    kept = [p.name for p in folder.iterdir()]
    write_checkpoint(folder, config, keep=kept)
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_calibrate_a_recipe_checkpoint_on_held_out_images(capsys, recipe_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(recipe_model, folder)
    code, _, err = run(capsys, "calibrate", folder)
    assert code == 2 and "holds out no calibration split (data.calibration)" in err
    code, out, err = run(
        capsys, "calibrate", folder, "--size", "40", "--coverage", "0.9", "0.95", "--json"
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["images"] == 40 and record["split"] == "val (generated (a split of its own))"
    assert record["test_images"] == 30 and record["score"] == "lac"
    assert [t["coverage"] for t in record["targets"]] == [0.9, 0.95]
    assert QPMConfig.load(folder / "config.json").calibration.to_dict() == record
    code, out, err = run(capsys, "calibrate", folder, "--split", "test", "--method", "raps")
    assert code == 0 and "warning: calibrating on the test split" in err
    assert "raps score, calibrated on 30 images from test" in out
    assert QPMConfig.load(folder / "config.json").calibration.raps_k_reg == 5
    code, _, err = run(capsys, "calibrate", folder, "--raps-lambda", "0.1")
    assert code == 2 and "apply to --method raps only" in err


def test_calibrate_a_bare_checkpoint_on_a_folder(capsys, qpm_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "model"
    shutil.copytree(qpm_dir, folder)
    code, _, err = run(capsys, "calibrate", folder)
    assert code == 2 and "records no training recipe" in err and "--split FOLDER" in err
    labelled = tmp_path / "labelled"
    rng = np.random.default_rng(0)
    names = QPMConfig.load(folder / "config.json").label_names
    for label in names:
        (labelled / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(labelled / label / f"{i}.png")
    code, out, err = run(capsys, "calibrate", folder, "--split", labelled, "--coverage", "0.9")
    assert code == 0, err
    assert f"calibrated on 20 images from {labelled}" in out and "test coverage" in out
    calibration = QPMConfig.load(folder / "config.json").calibration
    assert calibration.images == 20 and calibration.test_images is None
    code, _, err = run(capsys, "calibrate", folder, "--split", labelled, "--coverage", "0.99")
    assert code == 2 and "20 calibration images cannot calibrate a coverage of 0.99" in err
    code, _, err = run(capsys, "calibrate", tmp_path / "nothing")
    assert code == 2 and "neither a run folder" in err


@pytest.mark.slow
def test_fit_with_a_calibration_split_calibrates_the_checkpoint(tmp_path, capsys):
    import yaml

    recipe = {**TINY, "data": {**TINY["data"], "calibration": 100}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["fit", str(config), "--out", str(out), "--json", "--quiet"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert list(stages)[-1] == "calibrate"
    summary = stages["calibrate"]
    assert summary["calibration_images"] == 100 and summary["test_images"] == 150
    calibration = QPMConfig.load(out / "model" / "config.json").calibration
    assert calibration.coverages == (0.9, 0.95) and calibration.split.startswith("val (generated")
    for target in calibration.targets:
        # 150 test images: the coverage's standard error is about 0.025
        assert target.test_coverage >= target.coverage - 0.1
        assert 0.0 <= target.test_empty_share <= 1.0
    assert "## Prediction sets" in (out / "model" / "README.md").read_text()
    from qpm_zoo.model import QPM

    pred = QPM.from_pretrained(out / "model").predict(
        np.zeros((48, 48, 3), np.uint8), coverage=0.95
    )
    assert pred.prediction_set.empty or pred.prediction_set.labels[0] == pred.label
    # calibrating the run folder again on its val split gives the same record
    assert main(["calibrate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == calibration.to_dict()
