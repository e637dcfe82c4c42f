"""The `qpm` command line: JSON equals the results' to_dict(); errors are one line, status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qpm_zoo.cli import main
from qpm_zoo.model import QPM


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_logit_is_sum_of_contributions(capsys, qpm_dir, image_file):
    code, out, _ = run(capsys, "predict", qpm_dir, image_file, "--json", "--top-k", "2")
    assert code == 0
    data = json.loads(out)
    e = data["explanation"]
    assert data["logit"] == pytest.approx(
        e["bias"] + sum(f["contribution"] for f in e["features"]), abs=1e-5
    )
    assert len(data["top_k"]) == 2
    assert data == QPM.from_pretrained(qpm_dir).predict(image_file, top_k=2).to_dict()


def test_predict_several_images_gives_a_list(capsys, qsenn_dir, image_file):
    code, out, _ = run(capsys, "predict", qsenn_dir, image_file, image_file, "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 2
    for item in data:
        e = item["explanation"]
        assert item["logit"] == pytest.approx(
            e["bias"] + sum(f["contribution"] for f in e["features"]), abs=1e-5
        )


def test_predict_text_output_names_the_features(capsys, qpm_dir, image_file):
    code, out, _ = run(capsys, "predict", qpm_dir, image_file)
    assert code == 0
    assert str(image_file) in out and "sum of 2 feature contributions" in out and "part " in out


def test_explain_and_compare_json(capsys, qpm_dir):
    model = QPM.from_pretrained(qpm_dir)
    code, out, _ = run(capsys, "explain", qpm_dir, "Blue Jay", "--json")
    assert code == 0 and json.loads(out) == model.explain_class("Blue Jay").to_dict()
    code, out, _ = run(capsys, "compare", qpm_dir, "0", "Blue Jay", "--json")
    assert code == 0 and json.loads(out) == model.compare(0, "Blue Jay").to_dict()


def test_explain_and_compare_text(capsys, qsenn_dir):
    code, out, _ = run(capsys, "explain", qsenn_dir, "Cardinal")
    assert code == 0 and out.startswith("Cardinal (class 0) uses")
    code, out, _ = run(capsys, "compare", qsenn_dir, "Cardinal", "Blue Jay")
    assert code == 0 and "only Cardinal" in out and "only Blue Jay" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explain", "{model}", "Bluejay"], "unknown class 'Bluejay'"),
        (["predict", "{model}", "missing.png"], "missing.png: no such image file"),
        (["predict", "{model}/../absent", "{image}"], "no such checkpoint folder"),
        (["predict", "{model}", "{image}", "--top-k", "0"], "--top-k must be at least 1"),
    ],
)
def test_errors_are_one_line(capsys, qpm_dir, image_file, argv, message):
    argv = [a.format(model=qpm_dir, image=image_file) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_broken_checkpoint_is_reported_not_raised(capsys, qpm_dir, image_file, tmp_path):
    broken = Path(shutil.copytree(qpm_dir, tmp_path / "m"))
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "predict", broken, image_file)
    assert code == 2 and "model.safetensors: not a valid safetensors file" in err


def test_installed_entry_point(qpm_dir, image_file):
    exe = Path(sys.executable).parent / "qpm"
    result = subprocess.run(
        [str(exe), "predict", str(qpm_dir), str(image_file), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout)
    e = data["explanation"]
    assert data["logit"] == pytest.approx(sum(f["contribution"] for f in e["features"]), abs=1e-5)


def test_schema_prints_config_json_schema(capsys, qpm_dir):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["additionalProperties"] is False
    assert {"model_type", "backbone", "assignment", "onnx", "provenance"} <= set(
        schema["properties"]
    )
    config = json.loads((qpm_dir / "config.json").read_text())
    assert set(config) <= set(schema["properties"])
    assert set(schema["required"]) <= set(config)
