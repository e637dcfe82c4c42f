"""The adapter: a per-position network from a (frozen) backbone's maps to QPM's features.

DINO-QPM (docs/method.md §8) keeps a foundation model frozen and learns a small MLP on each of
its patch embeddings; QPM's feature diversity loss, statistics, assignment and fine-tuning then
act on the MLP's outputs. Written as 1×1 convolutions on [B, D, h, w] maps, the same network
works on CNN maps and transformer patch grids alike, keeps the maps spatial (so explanations
still localise features) and exports to ONNX as ordinary convolutions.
"""

from __future__ import annotations

from torch import nn

from .config import AdapterConfig


class Adapter(nn.Sequential):
    """`config.layers` × (1×1 convolution → batch norm → ReLU): [B, D, h, w] → [B, F, h, w].

    The final ReLU keeps the features non-negative like a CNN's last activations, which the
    feature diversity loss and QPM's feature statistics were designed for.
    """

    def __init__(self, config: AdapterConfig, in_channels: int):
        layers: list[nn.Module] = []
        for cin, cout in config.widths(in_channels):
            layers += [nn.Conv2d(cin, cout, kernel_size=1), nn.BatchNorm2d(cout), nn.ReLU()]
        super().__init__(*layers)
        self.config = config
