"""ONNX deployment (issue 15): the int8 variant, variant loading, providers with options,
IO binding, and the batched predict loop, on real checkpoints and image files."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export import onnx_validate
from export.cli import main
from qpm_zoo import CheckpointError, InputError, QPMConfig, QPMOnnx
from qpm_zoo.model import QPM
from qpm_zoo.onnx_model import cuda_provider, tensorrt_provider
from qpm_zoo.preprocess import list_images

CPU = ["CPUExecutionProvider"]


def _export(*argv) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, (json.loads(out.getvalue()) if out.getvalue().strip() else {})


@pytest.fixture(scope="module")
def int8_dir(qpm_dir, photo_folder, tmp_path_factory) -> Path:
    """The QPM checkpoint with its float32 export and an int8 variant calibrated on photos."""
    folder = tmp_path_factory.mktemp("deploy") / "m"
    shutil.copytree(qpm_dir, folder)
    assert _export("onnx", folder, "--json")[0] == 0
    code, result = _export(
        "onnx", folder, "--quantize", "int8", "--calibration", photo_folder,
        "--images", photo_folder, "--json",
    )  # fmt: skip
    assert code == 0 and result["written"], result
    return folder


def test_int8_variant_is_recorded_validated_and_quantised(int8_dir):
    import onnx

    record = QPMConfig.load(int8_dir / "config.json").onnx
    variant = record.variants["int8"]
    assert (variant.file, variant.precision) == ("model.int8.onnx", "int8")
    assert variant.validation["images"] == 40 and variant.validation["top1_agreement"] >= 0.99
    assert variant.exporter["calibration_images"] == 40
    assert variant.validation["explanation_residual"] <= onnx_validate.EXACTNESS_TOLERANCE
    graph = onnx.load(str(int8_dir / "model.int8.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # The head is not quantised: its class weights run in float32 after the last Conv.
    assert (int8_dir / "model.onnx").is_file() and record.file == "model.onnx"
    assert variant.exporter["weight_bits"] == 7 and "cpu_vnni" in variant.validation


def _largest_quantised_weight(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    return max(int(abs(w.astype(int)).max()) for w in weights if w.ndim == 4)


def test_int8_weights_keep_to_7_bits_unless_8_are_asked_for(int8_dir, photo_folder, tmp_path):
    """7-bit weights (the default) are what keeps AVX2's int16 sums of u8 × s8 products from
    saturating (export.quantize); 8 bits use the whole int8 range."""
    assert _largest_quantised_weight(int8_dir / "model.int8.onnx") <= 64
    folder = shutil.copytree(int8_dir, tmp_path / "m")
    code, result = _export(
        "onnx", folder, "--quantize", "int8", "--calibration", photo_folder,
        "--images", photo_folder, "--weight-bits", "8", "--json",
    )  # fmt: skip
    assert code == 0 and result["variant"]["exporter"]["weight_bits"] == 8
    assert _largest_quantised_weight(folder / "model.int8.onnx") == 127


@pytest.mark.parametrize("variant", [None, "int8"])
def test_every_variant_explains_its_own_outputs_exactly(int8_dir, photo_folder, variant):
    model = QPMOnnx.from_pretrained(int8_dir, providers=CPU, variant=variant)
    reference = QPM.from_pretrained(int8_dir)
    images = list_images(photo_folder)[:12]
    for got, ref in zip(model.predict(images, top_k=2), reference.predict(images, top_k=2)):
        assert got.explanation.total == pytest.approx(got.logit, rel=1e-5, abs=1e-5)
        assert got.logit == pytest.approx(ref.logit, abs=0.1)  # close to float32, not equal
    if variant == "int8":
        pixels = model.preprocessor(images[:4])[0]
        with torch.inference_mode():
            exact = reference.forward_all(torch.from_numpy(pixels)).logits.numpy()
        assert not np.allclose(model.forward_arrays(pixels).logits, exact, atol=1e-6)


def test_missing_variant_and_bad_variant_name(qpm_dir, int8_dir):
    with pytest.raises(
        CheckpointError, match=r"has no 'float16' ONNX variant \(variants: \['int8'\]\)"
    ):
        QPMOnnx.from_pretrained(int8_dir, variant="float16")
    with pytest.raises(InputError, match="variant must be 'float16', 'int8' or None, got 'fp8'"):
        QPMOnnx.from_pretrained(int8_dir, variant="fp8")


def test_qpm_predict_runs_the_variant_it_is_given(int8_dir, photo_folder, capsys):
    from qpm_zoo.cli import main as qpm

    image = str(list_images(photo_folder)[0])
    argv = ["predict", str(int8_dir), image, "--onnx", "--providers", "CPUExecutionProvider"]
    assert qpm([*argv, "--variant", "int8", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    expected = QPMOnnx.from_pretrained(int8_dir, providers=CPU, variant="int8").predict(image)
    assert got == expected.to_dict()
    assert qpm([*argv, "--variant", "float16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no 'float16' ONNX variant" in err
    assert qpm(["predict", str(int8_dir), image, "--variant", "int8"]) == 2
    assert "apply to --onnx only" in capsys.readouterr().err


def test_a_variant_below_its_target_is_not_written(int8_dir, photo_folder, tmp_path, monkeypatch):
    folder = shutil.copytree(int8_dir, tmp_path / "m")
    (folder / "model.int8.onnx").unlink()
    before = (folder / "config.json").read_text()
    monkeypatch.setitem(onnx_validate.AGREEMENT_TARGETS, "int8", 1.01)  # unreachable
    code, result = _export(
        "onnx", folder, "--quantize", "int8", "--calibration", photo_folder,
        "--images", photo_folder, "--json",
    )  # fmt: skip
    assert code == 1 and not result["written"] and not result["passed"]
    assert (folder / "config.json").read_text() == before
    assert not (folder / "model.int8.onnx").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantize", "int8"], "--quantize int8 needs --calibration"),
        (["--calibration", "train"], "--calibration is for --quantize int8"),
        (["--fp16", "--quantize", "int8"], "two variants; make one at a time"),
        (
            ["--quantize", "int8", "--calibration", "{tmp}/none"],
            "none: no such image file or folder",
        ),
        (["--quantize", "int8", "--calibration", "test"], "has no training recipe"),
        (["--fp16", "--weight-bits", "8"], "--weight-bits is for --quantize int8"),
    ],
)
def test_variant_usage_errors(int8_dir, photo_folder, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["onnx", str(int8_dir), *argv, "--images", str(photo_folder)]) == 2
    assert message in capsys.readouterr().err


def test_variant_needs_a_current_float32_export(qpm_dir, photo_folder, tmp_path, capsys):
    folder = shutil.copytree(qpm_dir, tmp_path / "m")
    assert main(["onnx", str(folder), "--fp16", "--images", str(photo_folder)]) == 2
    assert "has no float32 ONNX export" in capsys.readouterr().err


def test_reexporting_float32_drops_the_variants(int8_dir, tmp_path):
    folder = shutil.copytree(int8_dir, tmp_path / "m")
    assert _export("onnx", folder, "--json")[0] == 0
    assert QPMConfig.load(folder / "config.json").onnx.variants == {}
    assert not (folder / "model.int8.onnx").exists()


def test_provider_options_fall_back_to_the_cpu(int8_dir, tmp_path):
    cache = tmp_path / "trt-engines"
    trt = tensorrt_provider(cache, fp16=True, max_workspace_bytes=2**30)
    assert trt[0] == "TensorrtExecutionProvider" and cache.is_dir()
    assert trt[1]["trt_engine_cache_path"] == str(cache) and trt[1]["trt_fp16_enable"] is True
    assert cuda_provider(1)[1]["device_id"] == 1
    model = QPMOnnx.from_pretrained(
        int8_dir, providers=[trt, cuda_provider(), "CPUExecutionProvider"]
    )
    assert model.providers[-1] == "CPUExecutionProvider"
    if model.providers == CPU:
        assert model.device == "cpu"


def test_io_binding_gives_the_same_outputs(int8_dir):
    model = QPMOnnx.from_pretrained(int8_dir, providers=CPU)
    pixels = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    bound = model.run_bound(pixels, with_maps=True)
    plain = model.forward_arrays(pixels, with_maps=True)
    assert sorted(bound) == ["feature_maps", "features", "logits"]
    for name in bound:
        np.testing.assert_array_equal(bound[name].numpy(), getattr(plain, name))
    with pytest.raises(InputError, match="pixel_values has shape"):
        model.run_bound(pixels[:, :, :32])


def test_batched_predict_prepares_ahead_and_keeps_order_and_errors(
    int8_dir, photo_folder, tmp_path
):
    model = QPMOnnx.from_pretrained(int8_dir, providers=CPU)
    images = list_images(photo_folder)[:7]
    batched = model.predict(images, batch_size=3)
    one_by_one = [model.predict(p) for p in images]
    assert [p.input for p in batched] == [p.input for p in one_by_one]
    for a, b in zip(batched, one_by_one):
        assert a.logit == pytest.approx(b.logit, abs=1e-5)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        model.predict([*images, broken], batch_size=3)
