"""Feature maps turned into heatmaps over the model input (numpy and Pillow only).

A selected feature's map [h, w] covers the model input [H, W] (the resized, centre-cropped image
the network saw) in h × w equal cells. Upsampling it bilinearly with cell centres on the centres
of those pixel blocks keeps every cell over the pixels it was computed from, so the hottest
pixel of a heatmap lies in the cell where the map peaks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InputError


def upsample_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one map [h, w] to `size` = (height, width), float32.

    Pillow's bilinear filter samples at pixel centres (like torch's align_corners=False), so
    map cell (i, j) stays centred on pixel block (i·H/h .. (i+1)·H/h, j·W/w .. (j+1)·W/w).
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or min(values.shape) < 1:
        raise InputError(f"a feature map must be 2-D [h, w], got shape {values.shape}")
    height, width = size
    image = Image.fromarray(np.ascontiguousarray(values), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def normalise_map(values: np.ndarray, top: float | None = None) -> np.ndarray:
    """A map as a share of `top` (default: its own maximum), in [0, 1].

    0 means the feature does not fire there; negative values (backbones without a final ReLU)
    count as 0. A map that never fires stays 0 everywhere instead of being stretched.
    """
    values = np.clip(np.asarray(values, dtype=np.float32), 0.0, None)
    scale = float(values.max()) if top is None else float(top)
    if not scale > 0.0:
        return np.zeros_like(values)
    return np.clip(values / scale, 0.0, 1.0)


def feature_heatmap(
    values: np.ndarray, size: tuple[int, int], top: float | None = None
) -> np.ndarray:
    """One feature map as a [0, 1] heatmap over the model input of `size` = (height, width).

    `top` sets the value shown as 1 (default: the upsampled map's maximum); pass a shared value
    to put the same feature on several images on one scale.
    """
    return normalise_map(upsample_map(values, size), top)


def greyscale(view: np.ndarray) -> np.ndarray:
    """An HWC uint8 RGB image as float luminance in [0, 1] (Rec. 601), the backdrop of heatmaps:
    without colour of its own, the heatmap's colours read unambiguously."""
    rgb = np.asarray(view, dtype=np.float32) / 255.0
    return rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
