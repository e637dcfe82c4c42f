"""Pixels of the known-concept images: shape outlines, colours, textures, background clutter.

Kept apart from concepts.py (what is in a scene) so the look can change without touching the
ground truth. Everything is plain PIL ImageDraw plus numpy masks, fast enough (well under a
millisecond per 64 px image) to generate images on the fly inside `__getitem__`.

The palette is chosen for a small CNN: concept colours are saturated and far apart in hue,
while the background and clutter are desaturated, so colour tells concept from clutter but
only shape *and* colour (and texture) together tell one concept from another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .config import SHAPES

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 225),
    "yellow": (235, 215, 30),
    "magenta": (205, 40, 205),
    "cyan": (30, 205, 215),
    "orange": (245, 130, 20),
    "white": (248, 248, 248),
}

#: Colour of the stripes and dots drawn over a textured concept.
TEXTURE_INK = (18, 18, 18)


def _circle(n: int, radius: float = 1.0, cx: float = 0.0) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n))
        for i in range(n)
    ]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for i in range(2 * points):
        a = -math.pi / 2 + math.pi * i / points
        r = 1.0 if i % 2 == 0 else inner
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


def _cross(arm: float = 0.34) -> list[tuple[float, float]]:
    a = arm
    return [
        (-a, -1),
        (a, -1),
        (a, -a),
        (1, -a),
        (1, a),
        (a, a),
        (a, 1),
        (-a, 1),
        (-a, a),
        (-1, a),
        (-1, -a),
        (-a, -a),
    ]


def _crescent(offset: float = 0.45, inner: float = 0.8, n: int = 14) -> list[tuple[float, float]]:
    """The unit disc minus a disc of radius `inner` shifted right by `offset`, as one polygon."""
    x = (1 + offset**2 - inner**2) / (2 * offset)  # where the two circles cross
    y = math.sqrt(max(1 - x * x, 0.0))
    outer_start = math.atan2(y, x)
    inner_end = math.atan2(y, x - offset)
    pts = []
    for i in range(n + 1):  # outer arc, counter-clockwise through the left side
        a = outer_start + (2 * math.pi - 2 * outer_start) * i / n
        pts.append((math.cos(a), math.sin(a)))
    for i in range(n + 1):  # inner arc back, through the inner disc's left side
        a = -inner_end + (2 * inner_end - 2 * math.pi) * i / n
        pts.append((offset + inner * math.cos(a), inner * math.sin(a)))
    return pts


@dataclass(frozen=True)
class ShapeOutline:
    """A shape on the unit disc: an outer polygon and an optional hole (y points down)."""

    outer: tuple[tuple[float, float], ...]
    hole: tuple[tuple[float, float], ...] | None = None


OUTLINES: dict[str, ShapeOutline] = {
    "circle": ShapeOutline(tuple(_circle(28))),
    "square": ShapeOutline(
        tuple((math.cos(a), math.sin(a)) for a in (math.pi / 4 * k for k in (1, 3, 5, 7)))
    ),
    "triangle": ShapeOutline(
        tuple(
            (math.cos(a), math.sin(a))
            for a in (-math.pi / 2 + 2 * math.pi * k / 3 for k in range(3))
        )
    ),
    "star": ShapeOutline(tuple(_star())),
    "cross": ShapeOutline(tuple(_cross())),
    "diamond": ShapeOutline(((0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0))),
    "ring": ShapeOutline(tuple(_circle(28)), hole=tuple(_circle(20, 0.52))),
    "crescent": ShapeOutline(tuple(_crescent())),
}
assert set(OUTLINES) == set(SHAPES)


def place(
    points: tuple[tuple[float, float], ...], cx: float, cy: float, radius: float, angle_deg: float
) -> list[tuple[float, float]]:
    """Unit-disc points rotated by `angle_deg`, scaled to `radius` and moved to (cx, cy)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * radius, math.sin(a) * radius
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in points]


def shape_mask(
    shape: str, size: int, cx: float, cy: float, radius: float, angle_deg: float
) -> np.ndarray:
    """Boolean [size, size] mask of one shape instance."""
    outline = OUTLINES[shape]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon(place(outline.outer, cx, cy, radius, angle_deg), fill=255)
    if outline.hole is not None:
        draw.polygon(place(outline.hole, cx, cy, radius, angle_deg), fill=0)
    return np.asarray(canvas) > 127


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) of a mask, x1/y1 exclusive; (0, 0, 0, 0) when empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if len(cols) == 0:
        return (0, 0, 0, 0)
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


class TexturePatterns:
    """Boolean ink patterns for the textures at one image size (made once per generator)."""

    def __init__(self, size: int):
        period = max(4, round(size / 16))
        yy, xx = np.mgrid[0:size, 0:size]
        self.period = period
        self.patterns = {
            "solid": None,
            "striped": (yy % period) < (period // 2),
            "dotted": ((yy % period) < max(1, period // 2 - 1))
            & ((xx % period) < max(1, period // 2 - 1)),
        }

    def ink(self, texture: str) -> np.ndarray | None:
        return self.patterns[texture]


def muted_color(
    rng: np.random.Generator, low: int = 40, high: int = 200, tint: int = 22
) -> tuple[int, int, int]:
    """A greyish colour: the palette of background and clutter (never a saturated concept colour)."""
    grey = rng.uniform(low, high)
    r, g, b = (min(max(int(grey + t), 0), 255) for t in rng.uniform(-tint, tint, 3))
    return r, g, b


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, low-saturation background as a float [size, size, 3] array."""
    base = np.asarray(muted_color(rng, 70, 170, 18), dtype=np.float32)
    grid = 5
    light = rng.uniform(-32, 32, (grid, grid, 1)) + rng.uniform(-10, 10, (grid, grid, 3))
    small = Image.fromarray(np.clip(base + light, 0, 255).astype(np.uint8), "RGB")
    return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def draw_clutter(image: Image.Image, rng: np.random.Generator, count: int) -> None:
    """Lines, patches and small grey shapes, so that edges and shapes alone do not mark a concept."""
    size = image.size[0]
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        color = muted_color(rng)
        kind = rng.integers(3)
        if kind == 0:
            x0, y0, x1, y1 = rng.uniform(0, size, 4)
            draw.line((x0, y0, x1, y1), fill=color, width=int(rng.integers(1, 3)))
        elif kind == 1:
            w, h = rng.uniform(0.06, 0.22, 2) * size
            x0, y0 = rng.uniform(-w / 2, size - w / 2), rng.uniform(-h / 2, size - h / 2)
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=color)
        else:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            radius = rng.uniform(0.04, 0.11) * size
            cx, cy = rng.uniform(0, size, 2)
            draw.polygon(
                place(OUTLINES[shape].outer, cx, cy, radius, rng.uniform(0, 360)), fill=color
            )
