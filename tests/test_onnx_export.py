"""`python -m export onnx` and `python -m export bench` on real (tiny) checkpoints on disk."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_model

from export.bench import BenchRow, BenchSettings, PipelineRow, format_report
from export.cli import main
from export.errors import ExportError
from export.onnx_validate import (
    FP16_TOLERANCE,
    difference,
    real_views,
    sample_photos,
    validate,
    validation_inputs,
)
from qpm_zoo import QPMConfig, QPMOnnx
from qpm_zoo.model import QPM
from qpm_zoo.preprocess import LoadedImage


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def exported(qpm_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the QPM checkpoint exported by the command, and the command's JSON.

    It lives in the session's temp dir, where test_onnx_model reuses it instead of exporting
    again (no test changes it; the tests that damage checkpoints work on copies)."""
    folder = tmp_path_factory.getbasetemp() / "onnx-exported-qpm"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(qpm_dir, folder)
    out = io.StringIO()  # capsys is function-scoped, so capture the module fixture's output here
    with contextlib.redirect_stdout(out):
        assert main(["onnx", str(folder), "--json"]) == 0
    return folder, json.loads(out.getvalue())


def test_export_writes_a_checked_onnx_file_and_records_it(exported):
    folder, result = exported
    assert result["written"] and result["passed"]
    path = folder / "model.onnx"
    assert Path(result["file"]) == path
    record = QPMConfig.load(folder / "config.json").onnx.to_dict()
    assert record == result["record"]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["file"], record["opset"], record["dtype"]) == ("model.onnx", 18, "float32")
    assert record["input_size"] == [3, 64, 64] and record["dynamic_batch"] is True
    assert record["feature_map_size"] == [2, 2]

    graph = onnx.load(str(path))  # one file: the weights are inside
    onnx.checker.check_model(graph, full_check=True)
    assert not any(t.external_data for t in graph.graph.initializer)
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [18]

    def dims(value_info) -> list:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in graph.graph.input] == [
        ("pixel_values", ["batch", 3, 64, 64])
    ]
    assert [(o.name, dims(o)) for o in graph.graph.output] == [
        ("logits", ["batch", 5]),
        ("features", ["batch", 6]),
        ("feature_maps", ["batch", 6, 2, 2]),
    ]


def test_validation_covers_random_and_real_images_at_batch_1_and_5(exported):
    _, result = exported
    rows = result["validation"]
    cases = {(r["inputs"], r["batch"], r["output"]) for r in rows}
    assert cases == {
        (kind, b, out)
        for kind in ("random", "real")
        for b in (1, 5)
        for out in ("logits", "features", "feature_maps")
    }
    assert all(r["max_rel"] <= 1e-4 for r in rows)
    assert all(r["max_abs"] > 0 or r["max_rel"] == 0 for r in rows)
    summary = result["record"]["validation"]
    assert summary["tolerance"] == 1e-4
    assert summary["max_rel_diff"]["logits"] == max(
        r["max_rel"] for r in rows if r["output"] == "logits"
    )
    assert summary["labels_agree"] == "12/12"


def test_text_output_is_a_table(qsenn_dir, tmp_path, capsys, image_file):
    folder = shutil.copytree(qsenn_dir, tmp_path / "m")
    (folder / "model.onnx").write_bytes(b"an earlier export")
    code, out, err = run(
        capsys, "onnx", folder, "--out", folder / "sub" / "graph.onnx", "--images", image_file
    )
    assert code == 0, err
    assert "max rel diff" in out and "passed" in out and "labels agree on 12/12" in out
    assert "exporting with torch.onnx (dynamo, opset 18, float32)" in err
    assert f"and its entry in {folder / 'config.json'}" in out
    assert QPMConfig.load(folder / "config.json").onnx.file == "sub/graph.onnx"
    assert not (folder / "model.onnx").exists()  # the earlier export went with its record
    assert {"README.md", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    assert QPMOnnx.from_pretrained(folder).predict(image_file).explanation.bias != 0  # Q-SENN head


def test_a_failing_validation_writes_nothing(qpm_dir, tmp_path, capsys):
    folder = shutil.copytree(qpm_dir, tmp_path / "m")
    before = (folder / "config.json").read_text()
    code, out, err = run(capsys, "onnx", folder, "--tolerance", "1e-12")
    assert code == 1
    assert "FAILED" in out and "nothing was written" in err
    assert not (folder / "model.onnx").exists()
    assert (folder / "config.json").read_text() == before
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_validation_catches_a_different_model(exported):
    """The check compares numbers: the export of another model with the same shapes fails it."""
    folder, _ = exported
    other = make_model("qpm", seed=7)
    runtime = QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])
    inputs = validation_inputs(runtime.preprocessor, sample_photos(), (1, 5))
    assert validate(QPM.from_pretrained(folder), runtime, inputs, 1e-4).passed
    report = validate(other, runtime, inputs, 1e-4)
    assert not report.passed and report.worst("logits").max_rel > 1e-2


def test_fp16_variant_export(exported, photo_folder, tmp_path, capsys):
    """--fp16 (as --precision fp16) adds a float16 variant beside the float32 export."""
    folder = shutil.copytree(exported[0], tmp_path / "m")
    code, out, err = run(capsys, "onnx", folder, "--fp16", "--images", photo_folder, "--json")
    assert code == 0, err
    result = json.loads(out)
    variant = result["variant"]
    assert (variant["file"], variant["precision"]) == ("model.fp16.onnx", "float16")
    assert variant["validation"]["top1_agreement"] >= 0.995
    assert 1e-6 < variant["validation"]["max_rel_diff"]["logits"] <= FP16_TOLERANCE  # computes
    record = QPMConfig.load(folder / "config.json").onnx
    assert record.dtype == "float32" and record.variants["float16"].to_dict() == variant
    graph = onnx.load(str(folder / "model.fp16.onnx"))
    types = {t.data_type for t in graph.graph.initializer if len(t.dims) == 4}  # conv weights
    assert types == {onnx.TensorProto.FLOAT16}
    assert [i.type.tensor_type.elem_type for i in graph.graph.input] == [onnx.TensorProto.FLOAT]
    model = QPMOnnx.from_pretrained(folder, variant="float16")
    assert model.forward_arrays(np.zeros((2, 3, 64, 64), np.float32)).logits.dtype == np.float32


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "{tmp}/elsewhere.onnx"], "is outside the checkpoint folder"),
        (["--out", "{dir}/model.bin"], "ending in .onnx"),
        (["--opset", "17"], "opset 17 is too old"),
        (["--images", "{tmp}/missing.jpg"], "missing.jpg: no such file"),
        (["--tolerance", "0"], "--tolerance must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(qpm_dir, tmp_path, capsys, argv, message):
    folder = shutil.copytree(qpm_dir, tmp_path / "m")
    argv = [a.format(tmp=tmp_path, dir=folder) for a in argv]
    code, out, err = run(capsys, "onnx", folder, *argv)
    assert code == 2 and out == ""
    assert err.startswith("python -m export onnx: error:") and message in err
    assert "Traceback" not in err and not (folder / "model.onnx").exists()


def test_not_a_checkpoint_folder(tmp_path, capsys):
    code, _, err = run(capsys, "onnx", tmp_path / "nope")
    assert code == 2 and "nope: not a checkpoint folder" in err
    code, _, err = run(capsys, "onnx", tmp_path)
    assert code == 2 and "config.json: not found" in err


def test_difference_is_relative_to_the_output_scale():
    reference = np.array([[0.0, 10.0], [0.0, -20.0]])
    assert difference(reference + [[0.002, 0.0], [0.0, 0.0]], reference) == pytest.approx(
        (0.002, 1e-4)
    )
    assert difference(reference, reference) == (0.0, 0.0)
    assert difference(np.full(3, 1e-7), np.zeros(3)) == pytest.approx((1e-7, 0.1))  # floor 1e-6
    with pytest.raises(ExportError, match="shapes differ"):
        difference(np.zeros(2), np.zeros(3))


def test_real_views_are_distinct_crops():
    photos = sample_photos()
    assert [p.name for p in photos] == ["sklearn china.jpg", "sklearn flower.jpg"]
    views = real_views(photos, 5)
    assert len(views) == 5 and len({v.name for v in views}) == 5
    assert views[0] is photos[0] and views[2].size[0] < photos[0].size[0]
    array_view = real_views([LoadedImage("a", np.ones((10, 20, 3), np.float32))], 2)[1]
    assert array_view.image.shape == (6, 12, 3)


# -- bench -----------------------------------------------------------------------------------------
def test_bench_reports_ratios_head_share_and_the_pipeline(exported, capsys):
    folder, _ = exported
    code, out, err = run(
        capsys, "bench", folder, "--batch", "1", "3", "--repeats", "2", "--min-time", "0",
        "--warmup", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["settings"]["threads"] == 2 and data["settings"]["ort_providers"] == [
        "CPUExecutionProvider"
    ]
    rows = data["rows"]
    assert [r["batch"] for r in rows] == [1, 3]
    for r in rows:
        assert r["torch_img_s"] == pytest.approx(r["batch"] * 1000 / r["torch_ms"])
        assert r["ort_img_s"] == pytest.approx(r["batch"] * 1000 / r["ort_ms"])
        assert 0 < r["head_share"] < 1 and r["head_share"] == pytest.approx(
            r["head_ms"] / r["torch_ms"]
        )
        assert r["ratio"] > 0 and r["int8_ms"] is None  # this checkpoint has no int8 variant
    pipeline = data["pipeline"]
    assert (pipeline["batch"], pipeline["images"]) == (3, 64)
    assert pipeline["predict_ms"] > 0 and pipeline["session_ms"] > 0

    settings = BenchSettings(**data["settings"])
    text = format_report(settings, [BenchRow(**r) for r in rows], PipelineRow(**pipeline))
    assert text.startswith("test_resnet 64x64, 5 classes, n=6; 2 threads each")
    from export.quantize import cpu_has_vnni

    assert data["settings"]["cpu_vnni"] is cpu_has_vnni()  # int8 speed depends on it
    assert text.splitlines()[0].endswith(" VNNI/AMX")
    header, _rule, first, second, predict, target = text.splitlines()[1:]
    assert header.split() == (
        [
            "batch",
            "torch",
            "ms",
            "ort",
            "ms",
            "ort/torch",
            "torch",
            "img/s",
            "ort",
            "img/s",
            "head",
            "share",
        ]
    )
    assert first.split()[0] == "1" and second.split()[0] == "3" and first.split()[-1] == "%"
    assert predict.startswith("predict on 64 PNG files, batch 3:") and "overhead" in predict
    assert target.startswith("targets:")


def test_bench_needs_an_export(qpm_dir, capsys):
    code, out, err = run(capsys, "bench", qpm_dir, "--repeats", "1")
    assert code == 2 and out == ""
    assert "has no 'onnx' entry" in err and "python -m export onnx" in err
    code, _, err = run(capsys, "bench", qpm_dir, "--batch", "0")
    assert code == 2 and "--batch sizes must be positive" in err
