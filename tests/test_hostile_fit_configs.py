"""Hostile training configs (issue #16, group 2): refused with one line naming the file and the
field by `load_fit_config`, before any stage runs (nothing waits for the dense stage to fail)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from training.cli import main
from training.config import FitConfigError, load_fit_config

BASE = {
    "data": {"name": "concepts", "concepts": {"num_classes": 4, "train_size": 40, "test_size": 20}},
    "model": {"backbone": "test_resnet", "input_size": 32},
    "assignment": {"n": 6, "k": 2},
}


def _merged(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _write(tmp_path: Path, change: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_merged(BASE, change)))
    return path


def test_the_base_config_passes(tmp_path):
    assert load_fit_config(_write(tmp_path, {}), []).assignment.n == 6


@pytest.mark.parametrize(
    "change, message",
    [
        # the solver's own precondition (docs/method.md §3), now checked before training
        (
            {"data": {"concepts": {"num_classes": 20}}, "assignment": {"n": 5, "k": 1}},
            r"field 'assignment\.k': 5 features give only 5 distinct sets of k=1, fewer than the 20",
        ),
        (
            {"assignment": {"n": 900, "k": 2}},
            r"field 'assignment\.n' is 900, more than the \d+ features of backbone 'test_resnet'",
        ),
        ({"model": {"backbone": "resnet_fifty"}}, r"model: backbone 'resnet_fifty' is not a timm"),
        (
            {"model": {"kwargs": {"checkpoint_path": "/tmp/x.pth"}}},
            r"field 'model\.kwargs' must not set \['checkpoint_path'\]: only \[",
        ),
        (
            {"model": {"kwargs": {"stem_type": "deep", "drop_rate": 0.1}, "backbone": "test_vit"}},
            r"model: backbone 'test_vit': timm cannot build it with kwargs",
        ),
        (
            {"model": {"backbone": "test_efficientnet", "reduced_strides": True}},
            r"model: backbone 'test_efficientnet': reduced_strides applies to ResNets",
        ),
        ({"model": {"interpolation": "cubic"}}, r"field 'model\.interpolation' must be"),
        (
            {"model": {"input_size": 100000}},
            r"field 'model\.input_size' is 100000, larger than 4096 px .*QPM_MAX_INPUT_SIDE",
        ),
        ({"model": {"std": [0.5, 0.0, 0.5]}}, r"field 'model\.std\[1\]' must be"),
        (
            {"model": {"pretrained": "weights/missing.safetensors"}},
            r"field 'model\.pretrained': weights file weights/missing\.safetensors does not exist",
        ),
    ],
)
def test_refused_before_any_stage(tmp_path, change, message):
    with pytest.raises(FitConfigError, match=message) as caught:
        load_fit_config(_write(tmp_path, change), [])
    assert str(caught.value).startswith(str(tmp_path / "config.yaml"))
    assert "\n" not in str(caught.value)


def test_q_senn_needs_no_distinct_sets(tmp_path):
    change = {"model_type": "qsenn", "data": {"concepts": {"num_classes": 20}}}
    change["assignment"] = {"n": 5, "k": 1}
    assert load_fit_config(_write(tmp_path, change), []).model_type == "qsenn"


def test_a_backbone_over_the_size_limit_is_refused_unbuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("QPM_MAX_BACKBONE_PARAMETERS", "1000")
    with pytest.raises(FitConfigError, match=r"parameters, more than the limit of 1,000"):
        load_fit_config(_write(tmp_path, {}), [])


BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    start = time.perf_counter()
    with pytest.raises(
        FitConfigError,
        match=r"bomb\.yaml: not valid YAML at line 2, column \d+: "
        r"aliases \(\*name\) are not accepted",
    ):
        load_fit_config(path, [])
    assert time.perf_counter() - start < 1.0


def test_an_alias_in_a_set_override_is_refused(tmp_path):
    with pytest.raises(FitConfigError, match=r"--set .*aliases \(\*name\) are not accepted"):
        load_fit_config(_write(tmp_path, {}), ["publish.x=[&a [1], *a]"])


def test_the_fit_command_says_it_in_one_line(tmp_path, capsys):
    path = _write(tmp_path, {"assignment": {"n": 900}})
    code = main(["fit", str(path), "--out", str(tmp_path / "run")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "assignment.n" in err
    assert not (tmp_path / "run" / "dense").exists()
