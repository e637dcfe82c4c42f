"""Compute only the channels the head reads: the export's largest saving, exact in float32.

A QPM's head reads n of the backbone's F output channels (n = 16 of 512 in the demo, 50 of 2048
for CUB). In a ResNet the last block ends in `act(bn(conv(x)) + shortcut(x))`: a per-channel
expression, so selecting channels after it equals computing the selected output channels of
that last convolution (and of the shortcut) only. The last 3×3 convolution of the demo's
layer4 is about half of the whole network's multiply-adds; this cuts it to n/F of that.
Other backbones (and ResNet blocks whose last step mixes channels, such as squeeze-excitation)
are exported unchanged. `exporter.last_layer` in config.json's ONNX record (docs/checkpoint.md)
says which happened.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from qpm_zoo.backbone import Backbone
from qpm_zoo.head import InterpretableHead

#: activations that act on each element alone, so they commute with a channel selection
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.Hardswish, nn.Identity)


class ChannelSelect(nn.Module):
    """x[:, selection] — the shortcut of the pruned block, when it had no projection."""

    def __init__(self, selection: torch.Tensor):
        super().__init__()
        self.register_buffer("selection", selection.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.selection)


def _slice_output_channels(conv: nn.Conv2d, bn: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    """Keep only the output channels `keep` of a conv followed by its batch norm, in place."""
    conv.weight = nn.Parameter(conv.weight.detach().index_select(0, keep))
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach().index_select(0, keep))
    conv.out_channels = keep.numel()
    for name in ("weight", "bias"):
        value = getattr(bn, name)
        if value is not None:
            setattr(bn, name, nn.Parameter(value.detach().index_select(0, keep)))
    for name in ("running_mean", "running_var"):
        buffer = getattr(bn, name)
        if buffer is not None:
            setattr(bn, name, buffer.index_select(0, keep))
    bn.num_features = keep.numel()


def _last_conv_bn_act(block: nn.Module) -> tuple[str, str, str] | None:
    """The names of the last conv, its batch norm and the final activation of a timm ResNet
    block (BasicBlock: conv2/bn2/act2; Bottleneck: conv3/bn3/act3), or None."""
    from timm.models.resnet import BasicBlock, Bottleneck

    if isinstance(block, Bottleneck):
        return "conv3", "bn3", "act3"
    if isinstance(block, BasicBlock):
        return "conv2", "bn2", "act2"
    return None


def selected_channels_only(backbone: Backbone, selection: torch.Tensor) -> nn.Module | None:
    """A copy of `backbone` whose output holds only the channels `selection` (in that order), or
    None when its last layer is not a per-channel ResNet block ending."""
    from timm.models.resnet import ResNet

    model = backbone.model
    if not isinstance(model, ResNet) or not len(model.layer4):
        return None
    names = _last_conv_bn_act(model.layer4[-1])
    if names is None:
        return None
    block = model.layer4[-1]
    conv, bn, act = (getattr(block, name) for name in names)
    if not (
        isinstance(conv, nn.Conv2d)
        and type(bn) is nn.BatchNorm2d
        and isinstance(act, _ELEMENTWISE)
        and getattr(block, "se", None) is None
    ):
        return None
    pruned = copy.deepcopy(backbone)
    block = pruned.model.layer4[-1]
    keep = selection.detach().to(torch.long).cpu()
    _slice_output_channels(getattr(block, names[0]), getattr(block, names[1]), keep)
    shortcut = block.downsample
    block.downsample = (
        ChannelSelect(keep) if shortcut is None else nn.Sequential(shortcut, ChannelSelect(keep))
    )
    return pruned.eval()


def reading_all_channels(head: InterpretableHead) -> InterpretableHead:
    """A copy of `head` that reads its n features from an input of exactly those n channels."""
    pruned = copy.deepcopy(head)
    pruned.selection = torch.arange(head.num_features, device=head.selection.device)
    return pruned
