"""Hostile config.json files (issue #16, groups 1, 4, 5, 9, 10): each is one ConfigError line
naming the file and the field, raised while reading config.json, before anything is built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qpm_zoo import ConfigError, QPMConfig
from qpm_zoo.backbone import check_backbone
from qpm_zoo.config import json_schema
from qpm_zoo.model import QPM


@pytest.fixture
def ckpt(qpm_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(qpm_dir, tmp_path / "model"))


def _edited(folder: Path, edit) -> Path:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


# -- group 1: what predictions depend on is never defaulted ------------------------------------
PREDICTION_FIELDS = [
    ("preprocessing", None),
    *(
        ("preprocessing", name)
        for name in ("input_size", "interpolation", "crop_mode", "crop_pct", "mean", "std")
    ),
    ("backbone", "reduced_strides"),
    ("backbone", "kwargs"),
]


@pytest.mark.parametrize("section, name", PREDICTION_FIELDS)
def test_a_missing_field_that_predictions_depend_on_fails_loading(ckpt, section, name):
    def drop(data):
        if name is None:
            del data[section]
        else:
            del data[section][name]

    path = _edited(ckpt, drop)
    where = section if name is None else f"{section}.{name}"
    with pytest.raises(ConfigError, match=rf"config\.json: {where}: required field is missing"):
        QPMConfig.load(path)
    with pytest.raises(ConfigError, match=rf"{where}: required field is missing"):
        QPM.from_pretrained(ckpt)


def test_the_schema_requires_them_too():
    schema = json_schema()
    assert "preprocessing" in schema["required"]
    assert set(schema["$defs"]["PreprocessConfig"]["required"]) == {
        "input_size",
        "interpolation",
        "crop_mode",
        "crop_pct",
        "mean",
        "std",
    }
    assert {"kwargs", "reduced_strides"} <= set(schema["$defs"]["BackboneConfig"]["required"])


def test_code_still_builds_configs_with_the_imagenet_defaults(ckpt):
    config = QPMConfig.load(ckpt / "config.json")
    data = config.to_dict()
    del data["preprocessing"]
    assert QPMConfig(**data).preprocessing.input_size == (3, 224, 224)


def test_preprocessing_null_is_refused(ckpt):
    path = _edited(ckpt, lambda d: d.update(preprocessing=None))
    with pytest.raises(ConfigError, match=r"preprocessing: must be a JSON object, got null"):
        QPMConfig.load(path)


# -- group 4: sizes that would allocate gigabytes ----------------------------------------------
def test_a_huge_input_size_is_refused_before_anything_is_built(ckpt):
    path = _edited(ckpt, lambda d: d["preprocessing"].update(input_size=[3, 100000, 100000]))
    with pytest.raises(ConfigError, match=r"preprocessing\.input_size: .*QPM_MAX_INPUT_SIDE"):
        QPMConfig.load(path)


def test_the_input_size_limit_is_configurable(ckpt, monkeypatch):
    path = _edited(ckpt, lambda d: d["preprocessing"].update(input_size=[3, 64, 64]))
    monkeypatch.setenv("QPM_MAX_INPUT_SIDE", "32")
    with pytest.raises(ConfigError, match=r"larger than 32 px per side"):
        QPMConfig.load(path)
    monkeypatch.setenv("QPM_MAX_INPUT_SIDE", "64")
    assert QPMConfig.load(path).preprocessing.input_size == (3, 64, 64)


def test_a_backbone_over_the_parameter_limit_is_refused_before_it_is_built(ckpt, monkeypatch):
    monkeypatch.setenv("QPM_MAX_BACKBONE_PARAMETERS", "1000")
    with pytest.raises(ConfigError, match=r"parameters, more than the limit of 1,000"):
        QPM.from_pretrained(ckpt)


def test_a_huge_stem_is_refused(ckpt):
    path = _edited(ckpt, lambda d: d["backbone"]["kwargs"].update(stem_width=8000))
    with pytest.raises(ConfigError, match=r"backbone\.kwargs\.stem_width: must be an integer in"):
        QPMConfig.load(path)


# -- group 5: only the kwargs the product knows reach timm -------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"checkpoint_path": "/etc/passwd"}, r"kwargs: must not set \['checkpoint_path'\]"),
        ({"pretrained_cfg": {"file": "x"}}, r"kwargs: must not set \['pretrained_cfg'\]"),
        ({"num_classes": 7}, r"kwargs: must not set \['num_classes'\]"),
        ({"drop_rate": 1.5}, r"kwargs\.drop_rate: must be a number in \[0, 1\)"),
        ({"drop_rate": True}, r"kwargs\.drop_rate: must be a number in \[0, 1\), got boolean"),
        ({"stem_type": "wide"}, r"kwargs\.stem_type: must be '', 'deep' or 'deep_tiered'"),
        ({"avg_down": 1}, r"kwargs\.avg_down: must be true or false, got int 1"),
        ({"drop_rate": float("nan")}, r"kwargs: .*must be a finite number"),
    ],
)
def test_backbone_kwargs_are_checked_when_read(ckpt, kwargs, message):
    path = _edited(ckpt, lambda d: d["backbone"].update(kwargs=kwargs))
    with pytest.raises(ConfigError, match=rf"config\.json: backbone\.{message}"):
        QPMConfig.load(path)


def test_a_known_kwarg_timm_cannot_use_is_one_line(ckpt):
    with pytest.raises(ConfigError, match=r"backbone 'test_efficientnet': timm cannot build it"):
        check_backbone("test_efficientnet", {"stem_type": "deep"}, False)


def test_allowed_kwargs_build_the_model(ckpt):
    assert check_backbone("test_resnet", {"drop_rate": 0.1, "avg_down": True}, True) > 0


# -- group 9: a NaN metric would load and then fail to save ------------------------------------
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_metric_is_refused_when_read(ckpt, value):
    path = ckpt / "config.json"
    text = path.read_text().replace('"metrics": {}', f'"metrics": {{"top1": {value}}}')
    assert value in text
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"config\.json: metrics: top1 must be a finite number"):
        QPMConfig.load(path)


def test_a_non_finite_value_deep_in_the_recipe_is_refused(ckpt):
    path = _edited(ckpt, lambda d: d.update(training={"dense": {"lr": [1.0, float("inf")]}}))
    with pytest.raises(ConfigError, match=r"training: dense\.lr\[1\] must be a finite number"):
        QPMConfig.load(path)


# -- group 10: names shown to people -------------------------------------------------------------
@pytest.mark.parametrize(
    "name, problem",
    [
        ("", "must be a non-empty name"),
        ("   ", "must be a non-empty name"),
        ("red\x1b[2Jbird", "must not hold control characters"),
        ("line\nbreak", "must not hold control characters"),
        ("zero\u200bwidth", "must not hold control characters"),
    ],
)
def test_label_names_must_be_printable(ckpt, name, problem):
    path = _edited(ckpt, lambda d: d["label_names"].__setitem__(1, name))
    with pytest.raises(ConfigError, match=rf"config\.json: label_names\[1\]: {problem}"):
        QPMConfig.load(path)


def test_feature_names_must_be_printable(ckpt):
    path = _edited(ckpt, lambda d: d["feature_names"].__setitem__(0, "\x07bell"))
    with pytest.raises(ConfigError, match=r"feature_names\[0\]: must not hold control characters"):
        QPMConfig.load(path)


def test_unicode_names_are_fine(ckpt):
    path = _edited(ckpt, lambda d: d["label_names"].__setitem__(1, "Rotkehlchen – Ærø 鳥"))
    assert QPMConfig.load(path).label_names[1] == "Rotkehlchen – Ærø 鳥"


def test_code_cannot_pass_unknown_kwargs_to_timm_either(tmp_path):
    from qpm_zoo.backbone import Backbone

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not read")
    with pytest.raises(ConfigError, match=r"backbone 'test_resnet': kwargs: must not set"):
        Backbone.create("test_resnet", checkpoint_path=str(weights))


def test_a_nan_metric_set_in_code_fails_before_anything_is_written(ckpt):
    model = QPM.from_pretrained(ckpt)
    before = sorted(p.name for p in ckpt.iterdir())
    with pytest.raises(ConfigError, match=r"metrics: top1 must be a finite number, got nan"):
        model.set_config(model.config.replace(metrics={"top1": float("nan")}))
    model.save_pretrained(ckpt)
    assert sorted(p.name for p in ckpt.iterdir()) == before
