"""Offline ImageNet weights for EfficientNet-Lite: mapped one to one onto timm, or refused."""

from __future__ import annotations

import pytest
import torch

from training.nn.pretrained import (
    PretrainedWeightsError,
    create_backbone,
    load_offline_weights,
    map_state_dict,
)


def test_lite0_weights_map_onto_timm_one_to_one():
    import timm

    weights = load_offline_weights("tf_efficientnet_lite0")
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert list(weights) == list(reference)
    assert all(weights[k].shape == reference[k].shape for k in reference)
    assert weights["classifier.weight"].shape == (1000, 1280)


def test_pretrained_backbone_carries_the_imagenet_statistics():
    backbone = create_backbone("tf_efficientnet_lite0", pretrained=True)
    bn = backbone.model.bn1
    # freshly initialised BatchNorm has mean 0 / var 1; ImageNet-trained statistics do not
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert backbone.num_features == 1280


def test_converted_network_recognises_a_checkerboard_as_a_crossword():
    """End-to-end check of the mapping: ImageNet class 918 is "crossword puzzle". The converted
    network puts a black-and-white checkerboard there; randomly initialised ones do not."""
    import timm

    board = (torch.arange(224)[:, None] // 28 + torch.arange(224)[None, :] // 28) % 2
    x = board.float().expand(1, 3, 224, 224) * 2 - 1  # mean = std = 0.5 normalisation
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    with torch.inference_mode():
        random_top = int(model(x).argmax())
        model.load_state_dict(load_offline_weights("tf_efficientnet_lite0"))
        top = int(model(x).argmax())
    assert top == 918
    assert random_top != 918


def test_mapping_refuses_a_shape_mismatch():
    src = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    dst = {"x.weight": torch.zeros(2, 3), "x.bias": torch.zeros(3)}
    with pytest.raises(
        PretrainedWeightsError, match=r"'a\.bias' \(2,\) does not correspond to 'x\.bias' \(3,\)"
    ):
        map_state_dict(src, dst, "weights.pth")


def test_mapping_refuses_a_role_mismatch_and_a_count_mismatch():
    src = {"a.running_mean": torch.zeros(3)}
    dst = {"x.bias": torch.zeros(3)}
    with pytest.raises(PretrainedWeightsError, match="does not correspond"):
        map_state_dict(src, dst, "w")
    with pytest.raises(PretrainedWeightsError, match="2 tensors, but the timm model has 1"):
        map_state_dict({"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, {"x.w": torch.zeros(1)}, "w")


def test_unreachable_timm_weights_give_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError, match="tf_efficientnet_lite0"):
        create_backbone("resnet18", pretrained=True)


def test_missing_weights_file(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        create_backbone("resnet18", pretrained=str(tmp_path / "nope.safetensors"))
