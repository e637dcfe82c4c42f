"""Heatmap panels as pixels for the page: a feature's map over the greyscale model input, in
the colours of the figures (qpm_zoo.viz.panels), composed in numpy instead of matplotlib's
renderer so a prediction's k panels take milliseconds."""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np
from PIL import Image

from ..viz.heatmap import feature_heatmap, greyscale
from ..viz.panels import MAX_ALPHA, heat_colormap
from ..viz.render import require_matplotlib

#: Side of a panel in the page, in pixels (small model inputs are enlarged to it).
PANEL_PIXELS = 224


@lru_cache(maxsize=4)
def _lookup_table(name: str) -> np.ndarray:
    """A matplotlib colour map as a [256, 3] float table in [0, 1]."""
    require_matplotlib("the explorer's heatmaps (qpm app)")
    from matplotlib import colormaps

    return colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def _enlarged(view: np.ndarray) -> np.ndarray:
    """The model input scaled so its longer side is PANEL_PIXELS (nearest: keeps its pixels)."""
    height, width = view.shape[:2]
    scale = PANEL_PIXELS / max(height, width)
    if scale <= 1.0:
        return view
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(view).resize(size, Image.Resampling.NEAREST))


def overlay(view: np.ndarray, feature_map: np.ndarray, weight: float) -> np.ndarray:
    """[H, W, 3] uint8: `feature_map` [h, w] upsampled over the greyscale `view`, its opacity
    rising with the heat (transparent where the feature does not fire)."""
    view = _enlarged(view)
    heat = feature_heatmap(feature_map, view.shape[:2])
    colours = _lookup_table(heat_colormap(weight))[np.round(heat * 255).astype(np.int64)]
    alpha = (MAX_ALPHA * heat)[..., None]
    grey = greyscale(view)[..., None]
    return np.round(255.0 * ((1.0 - alpha) * grey + alpha * colours)).astype(np.uint8)


def model_input(view: np.ndarray) -> np.ndarray:
    """The model input in colour, at panel size."""
    return _enlarged(view)


def png_data_uri(pixels: np.ndarray) -> str:
    """An RGB image inlined as a data: URI (the panels travel inside the page's HTML)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
