"""timm backbones and the paper's reduced strides (stride 1 in layer3/layer4, no dilation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qpm_zoo import ConfigError
from qpm_zoo.backbone import Backbone


@pytest.mark.parametrize("name", ["resnet18", "resnet18d"])
def test_reduced_strides_give_stride_8_maps_without_dilation(name):
    plain = Backbone.create(name)
    reduced = Backbone.create(name, reduced_strides=True)
    x = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        assert plain(x).shape[-2:] == (7, 7)
        assert reduced(x).shape[-2:] == (28, 28)
    # same parameters (pretrained weights still fit) and no dilated convolution anywhere
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in reduced.state_dict().items()
    }
    assert all(m.dilation == (1, 1) for m in reduced.modules() if isinstance(m, nn.Conv2d))
    assert reduced.config.reduced_strides and reduced.num_features == 512


def test_reduced_strides_refused_for_non_resnets():
    with pytest.raises(ConfigError, match="reduced_strides applies to ResNets"):
        Backbone.create("test_efficientnet", reduced_strides=True)


def test_unknown_backbone_name():
    with pytest.raises(ConfigError, match="'resnet5000' is not a timm model name"):
        Backbone.create("resnet5000")


def test_backbone_kwargs_are_recorded():
    bb = Backbone.create("test_resnet", drop_rate=0.1)
    assert bb.config.kwargs == {"drop_rate": 0.1}
    assert bb(torch.zeros(2, 3, 64, 64)).shape[:2] == (2, bb.num_features)
