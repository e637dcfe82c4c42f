"""The export computes only the channels the head reads (export/pruning.py): the same numbers as
the whole backbone followed by the selection, for every ResNet block ending it applies to, and
the backbones it must leave alone."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from conftest import make_model

from export.cli import main
from export.pruning import reading_all_channels, selected_channels_only
from qpm_zoo import QPMConfig, QPMOnnx
from qpm_zoo.backbone import Backbone
from qpm_zoo.model import QPM


def _randomise_batch_norms(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine terms, so a wrongly sliced norm shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize(
    "name, reduced",
    [
        ("test_resnet", False),  # BasicBlock with a projection shortcut
        ("resnet18", False),  # BasicBlock, identity shortcut
        ("resnet26", False),  # Bottleneck, identity shortcut
        ("resnet10t", True),  # the demo's backbone, reduced strides
    ],
)
def test_selected_channels_equal_the_whole_backbone_then_the_selection(name, reduced):
    torch.manual_seed(0)
    backbone = Backbone.create(name, reduced_strides=reduced).eval()
    _randomise_batch_norms(backbone, 1)
    selection = torch.from_numpy(
        np.random.default_rng(0).choice(backbone.num_features, 7, replace=False)
    )
    pruned = selected_channels_only(backbone, selection)
    assert pruned is not None
    x = torch.randn(3, 3, 48, 48)
    with torch.inference_mode():
        whole = backbone(x).index_select(1, selection)
        got = pruned(x)
    assert got.shape == whole.shape
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-5)
    # the original is untouched
    assert backbone.model.layer4[-1].conv1.weight.shape[0] > 0
    with torch.inference_mode():
        assert backbone(x).shape[1] == backbone.num_features


@pytest.mark.parametrize("name", ["seresnet18", "test_efficientnet"])
def test_backbones_whose_last_step_mixes_channels_are_left_alone(name):
    backbone = Backbone.create(name)
    assert selected_channels_only(backbone, torch.arange(3)) is None


def test_head_reads_its_features_from_exactly_those_channels():
    model = make_model("qpm", seed=3)
    head = reading_all_channels(model.head)
    assert head.selection.tolist() == list(range(model.head.num_features))
    assert model.head.selection.tolist() != head.selection.tolist()  # a copy, not the original
    maps = torch.randn(2, model.backbone.num_features, 4, 4)
    a, b = model.head(maps), head(maps.index_select(1, model.head.selection))
    torch.testing.assert_close(a.logits, b.logits)


def _conv_output_channels(path) -> set[int]:
    graph = onnx.load(path).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    return {shapes[node.input[1]][0] for node in graph.node if node.op_type == "Conv"}


def _export(folder, *argv) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["onnx", str(folder), "--json", *argv]) == 0
    return json.loads(out.getvalue())


def test_the_export_records_its_channels_and_matches_the_whole_network(qpm_dir, tmp_path):
    selected = shutil.copytree(qpm_dir, tmp_path / "selected")
    every = shutil.copytree(qpm_dir, tmp_path / "every")
    assert _export(selected)["record"]["exporter"]["last_layer"] == "selected channels only"
    assert _export(every, "--all-channels")["record"]["exporter"]["last_layer"] == "all channels"
    n = QPMConfig.load(selected / "config.json").n_features
    # the pruned graph has a convolution with exactly the head's n output channels
    assert n in _conv_output_channels(selected / "model.onnx")
    assert n not in _conv_output_channels(every / "model.onnx")
    assert (selected / "model.onnx").stat().st_size < (every / "model.onnx").stat().st_size
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    a = QPMOnnx.from_pretrained(selected, providers=["CPUExecutionProvider"]).forward_arrays(
        x, with_maps=True
    )
    b = QPMOnnx.from_pretrained(every, providers=["CPUExecutionProvider"]).forward_arrays(
        x, with_maps=True
    )
    with torch.inference_mode():
        c = QPM.from_pretrained(qpm_dir).forward_all(torch.from_numpy(x))
    for name in ("logits", "features", "feature_maps"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(getattr(a, name), getattr(c, name).numpy(), rtol=1e-4, atol=1e-5)
    assert a.feature_maps.shape[1] == n


def test_all_channels_is_for_the_float32_export(qpm_dir, tmp_path, capsys):
    folder = shutil.copytree(qpm_dir, tmp_path / "m")
    assert main(["onnx", str(folder), "--precision", "fp16", "--all-channels"]) == 2
    assert "--all-channels are for the float32 export" in capsys.readouterr().err
