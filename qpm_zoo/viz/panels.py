"""Drawing one heatmap panel: a feature's map over the greyscale model input.

Shared by the explanation and the comparison figures so that a feature looks the same in both:
warm colours for a feature that counts for the class (positive weight), cool ones for a
Q-SENN feature with a negative weight, transparent where the feature does not fire.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

import numpy as np

from .heatmap import greyscale

#: Colour maps of the heat: evidence for the class, and (Q-SENN) evidence against it.
POSITIVE_CMAP = "inferno"
NEGATIVE_CMAP = "viridis"
#: Text colours of contributions by sign.
POSITIVE_TEXT = "#a4161a"
NEGATIVE_TEXT = "#1d4e89"
#: Opacity of the heat where the map is at its maximum; lower values fade out with it.
MAX_ALPHA = 0.85
FOOTNOTE_FONT = 7.5
FOOTNOTE_LINE_INCHES = FOOTNOTE_FONT * 1.4 / 72


def heat_colormap(weight: float) -> str:
    return NEGATIVE_CMAP if weight < 0 else POSITIVE_CMAP


def sign_colour(value: float) -> str:
    return NEGATIVE_TEXT if value < 0 else POSITIVE_TEXT


def bare(ax: Any) -> None:
    """No ticks, no tick labels: panels show images, not coordinates."""
    ax.set_xticks([])
    ax.set_yticks([])


def draw_image(ax: Any, view: np.ndarray) -> None:
    """The model input in colour."""
    ax.imshow(view)
    bare(ax)


def draw_heatmap(ax: Any, view: np.ndarray, heat: np.ndarray, weight: float = 1.0) -> Any:
    """`heat` ([0, 1], the size of `view`) over the greyscale `view`; returns the heat's image.

    The heat's opacity rises with its value, so the image stays visible where the feature is
    quiet; the colour map says the sign of the class's weight on the feature.
    """
    ax.imshow(greyscale(view), cmap="gray", vmin=0.0, vmax=1.0)
    alpha = MAX_ALPHA * np.clip(heat, 0.0, 1.0)
    image = ax.imshow(
        heat, cmap=heat_colormap(weight), vmin=0.0, vmax=1.0, alpha=alpha, interpolation="bilinear"
    )
    if not np.any(heat > 0):
        note(ax, "does not fire here", "center")
    bare(ax)
    return image


def note(ax: Any, text: str, where: str = "lower left") -> None:
    """Small text inside a panel, on a translucent white box so it reads over any image."""
    x, y, ha, va = {
        "lower left": (0.03, 0.03, "left", "bottom"),
        "center": (0.5, 0.5, "center", "center"),
    }[where]
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha=ha,
        va=va,
        fontsize=7.5,
        color="0.15",
        bbox={
            "boxstyle": "round,pad=0.25",
            "facecolor": "white",
            "edgecolor": "none",
            "alpha": 0.75,
        },
    )


def wrap(text: str, width: int, lines: int = 2) -> str:
    """`text` on at most `lines` lines of `width` characters (cut with an ellipsis)."""
    return "\n".join(textwrap.wrap(text, width, max_lines=lines, placeholder="…")) or text


def short_name(name: str) -> str:
    """A file path's last part (figure titles have no room for folders); other names as they are."""
    if "/" not in name and "\\" not in name:
        return name
    return os.path.basename(name.rstrip("/\\").replace("\\", "/")) or name


def footnote_text(text: str, width_inches: float) -> str:
    """`text` wrapped to fit a figure `width_inches` wide (each paragraph starts a new line)."""
    chars = max(40, int(width_inches * 72 / (FOOTNOTE_FONT * 0.52)))
    return "\n".join(textwrap.fill(paragraph, chars) for paragraph in text.split("\n"))


def add_footnote(fig: Any, text: str) -> None:
    """The figure's reading instructions, small and grey, under everything."""
    fig.supxlabel(text, fontsize=FOOTNOTE_FONT, color="0.3")
