"""Vision transformers as backbones (docs/method.md §8.1): their patch tokens as feature maps,
and everything downstream (head, explanations, figures, metrics, ONNX) on those maps."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import timm
import torch

from qpm_zoo import ConfigError, PreprocessConfig, QPMOnnx
from qpm_zoo.backbone import CHANNELS_LAST, TOKENS, Backbone, check_backbone
from qpm_zoo.config import AdapterConfig, BackboneConfig
from qpm_zoo.model import QPM

#: a plain ViT and a DINOv2 with 4 register tokens, shrunk to milliseconds on the CPU
PLAIN = (
    "vit_small_patch16_224",
    {"img_size": 48, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
)
DINOV2 = (
    "vit_small_patch14_reg4_dinov2",
    {"img_size": 56, "embed_dim": 32, "depth": 2, "num_heads": 2},
)


def tokens_by_hand(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    """The reference the backbone must match: forward_features' tokens without the class and
    register tokens, laid out row by row on the patch grid."""
    model = backbone.model
    tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
    p = model.patch_embed.patch_size
    h, w = x.shape[2] // p[0], x.shape[3] // p[1]
    return tokens.transpose(1, 2).reshape(len(x), -1, h, w)


@pytest.mark.parametrize(("name", "kwargs", "prefix", "grid"), [(*PLAIN, 1, 6), (*DINOV2, 5, 4)])
def test_patch_tokens_become_maps_on_the_patch_grid(name, kwargs, prefix, grid):
    torch.manual_seed(0)
    bb = Backbone.create(name, **kwargs).eval()
    assert bb.layout == TOKENS and bb.model.num_prefix_tokens == prefix
    x = torch.randn(2, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.inference_mode():
        maps = bb(x)
        assert maps.shape == (2, 32, grid, grid) and bb.num_features == 32
        assert torch.allclose(maps, tokens_by_hand(bb, x), atol=1e-6)


def test_dynamic_image_size_gives_the_grid_of_the_actual_input():
    name, kwargs = DINOV2
    bb = Backbone.create(name, **kwargs, dynamic_img_size=True).eval()
    with torch.inference_mode():
        for side in (28, 56, 84):
            x = torch.randn(1, 3, side, side + 14)
            maps = bb(x)
            assert maps.shape[-2:] == (side // 14, side // 14 + 1)
            assert torch.allclose(maps, tokens_by_hand(bb, x), atol=1e-6)
    with pytest.raises(ConfigError, match=r"input 50×50 px is not a multiple of its patch size"):
        bb.check_input(50, 50)


def test_a_fixed_size_transformer_refuses_other_input_sizes():
    name, kwargs = DINOV2
    with pytest.raises(ConfigError, match=r"takes \[56, 56\] px inputs, not 64×64"):
        check_backbone(name, kwargs, False, input_size=64)
    assert check_backbone(name, kwargs, False, input_size=56) == 32
    config = _tiny_qpm(Backbone.create(name, **kwargs), 56).config
    config = config.replace(preprocessing=PreprocessConfig(input_size=(3, 64, 64)))
    with pytest.raises(ConfigError, match=r"set kwargs.img_size to the input size"):
        QPM(config)


def test_parameter_limit_is_checked_on_the_meta_device_for_transformers(monkeypatch):
    trunk = sum(p.numel() for p in Backbone.create("test_resnet").parameters())
    name, kwargs = DINOV2
    meta = check_backbone(name, kwargs, False)
    assert meta == 32
    monkeypatch.setenv("QPM_MAX_BACKBONE_PARAMETERS", "10000")
    with pytest.raises(ConfigError, match=r"parameters, more than the limit of 10,000"):
        Backbone.create(name, **kwargs)
    monkeypatch.setenv("QPM_MAX_BACKBONE_PARAMETERS", str(trunk + 1000))
    with pytest.raises(ConfigError, match=r"with its mlp adapter has .* more than the limit"):
        check_backbone(
            "test_resnet",
            {},
            False,
            adapter=AdapterConfig(kind="mlp", features=8, hidden=99, layers=3),
        )


def test_transformer_shape_kwargs_are_checked_when_config_json_is_read():
    base = {"name": "vit_small_patch16_224", "num_features": 32}
    for kwargs, problem in [
        ({"depth": 0}, "depth: must be an integer in 1..64"),
        ({"img_size": 10**6}, "img_size: must be a side"),
        ({"dynamic_img_size": "yes"}, "dynamic_img_size: must be true or false"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            BackboneConfig(**base, kwargs=kwargs)


def test_channels_last_maps_are_permuted():
    """Swin gives [B, h, w, D] (timm's output_fmt NHWC); the backbone gives [B, D, h, w]."""
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=0,
        global_pool="",
        img_size=64,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 2),
        window_size=4,
    )
    config = BackboneConfig(name="swin_tiny_patch4_window7_224", num_features=model.num_features)
    bb = Backbone(config, _model=model).eval()
    assert bb.layout == CHANNELS_LAST
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(bb(x), model.forward_features(x).permute(0, 3, 1, 2))


def _tiny_qpm(bb: Backbone, input_size: int, n: int = 6, seed: int = 0) -> QPM:
    rng = np.random.default_rng(seed)
    labels = ["red", "green", "blue", "cyan"]
    weight = np.zeros((4, n), dtype=np.float32)
    for c, row in enumerate([(0, 1), (1, 2), (3, 4), (4, 5)]):
        weight[c, list(row)] = 1
    return QPM.from_assignment(
        bb,
        selected_features=rng.choice(bb.num_features, n, replace=False),
        weight=weight,
        mean=rng.random(n).astype(np.float32) * 0.1,
        std=(rng.random(n) * 0.5 + 0.5).astype(np.float32),
        label_names=labels,
        k=2,
        preprocessing=PreprocessConfig(
            input_size=(3, input_size, input_size), mean=(0.5,) * 3, std=(0.5,) * 3
        ),
    )


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A QPM on the tiny DINOv2 (registers) with an mlp adapter, saved as a checkpoint."""
    torch.manual_seed(0)
    name, kwargs = DINOV2
    adapter = AdapterConfig(kind="mlp", features=12, hidden=24, layers=2)
    bb = Backbone.create(name, adapter=adapter, **kwargs)
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for m in bb.adapter.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("vit") / "model"
    _tiny_qpm(bb.eval(), 56).save_pretrained(folder)
    return folder


def test_a_transformer_checkpoint_explains_exactly_and_round_trips(vit_dir):
    model = QPM.from_pretrained(vit_dir)
    config = json.loads((vit_dir / "config.json").read_text())
    assert config["backbone"]["adapter"] == {
        "kind": "mlp",
        "features": 12,
        "hidden": 24,
        "layers": 2,
    }
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (70, 60, 3), dtype=np.uint8) for _ in range(3)]
    items = model.predict_with_maps(images)
    batch, _ = model.preprocessor(images)
    with torch.inference_mode():
        out = model.forward_all(torch.from_numpy(batch))
    assert out.feature_maps.shape == (3, 6, 4, 4)
    for item, row in zip(items, out.logits.numpy()):
        e = item.prediction.explanation
        assert item.prediction.class_index == int(np.argmax(row))
        assert e.logit == pytest.approx(sum(f.contribution for f in e.features), abs=1e-5)
        assert e.logit == pytest.approx(float(row.max()), abs=1e-5)


def test_figures_draw_transformer_maps(vit_dir, image_file):
    from qpm_zoo.viz import explanation_figure

    model = QPM.from_pretrained(vit_dir)
    fig = explanation_figure(model, image_file)
    assert len(fig.axes) == 3  # the input and the k = 2 features of the predicted class


def test_sid_and_pointing_read_transformer_maps(vit_dir):
    from training.metrics import PointingGame, SIDAccumulator

    model = QPM.from_pretrained(vit_dir)
    x = torch.randn(4, 3, 56, 56)
    with torch.inference_mode():
        out = model.forward_all(x)
    sid = SIDAccumulator(model.head.weight, k=2)
    sid.update(out.feature_maps, out.logits.argmax(dim=1))
    assert 0.5 - 1e-9 <= sid.compute() <= 1 + 1e-9
    # feature j sees concept j; each image shows concept 0 in its top-left quarter, which on
    # the 4×4 patch grid (14 px patches of 56 px) is the 2×2 top-left patches
    game = PointingGame(np.arange(6), 56, 56)
    game.update(out.feature_maps, [[(0, (0, 0, 28, 28), True)]] * 4)
    maps = out.feature_maps[:, 0].flatten(1).numpy()
    peaks = maps.argmax(axis=1)
    expected = sum(int(p // 4 < 2 and p % 4 < 2) for p in peaks)
    result = game.compute()
    assert result.trials[0] == 4 and result.hits[0] == expected
    assert result.overall == expected / 4


def test_onnx_export_of_a_transformer_with_adapter_matches_pytorch(vit_dir, tmp_path):
    import shutil

    from export.cli import main

    folder = tmp_path / "model"
    shutil.copytree(vit_dir, folder)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["onnx", str(folder), "--json"]) == 0
    result = json.loads(out.getvalue())
    assert result["passed"]
    assert list(result["record"]["feature_map_size"]) == [4, 4]
    onnx_model, torch_model = QPMOnnx.from_pretrained(folder), QPM.from_pretrained(folder)
    batch = np.random.default_rng(2).normal(size=(3, 3, 56, 56)).astype(np.float32)
    got = onnx_model.forward_arrays(batch, with_maps=True)
    want = torch_model.forward_arrays(batch, with_maps=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-4)
