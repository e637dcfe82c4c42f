"""Looking at the data: a contact sheet PNG with the ground-truth boxes, and a split written to
disk as an ImageFolder tree (plus ground_truth.json for the known-concept data)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from qpm_zoo.config import write_bytes_atomic

from ..errors import DataConfigError
from .base import DataSplits, ImageDataset
from .concepts import ConceptGroundTruth, ImageTruth

TILE = 192
#: outline colours of the boxes: a class concept, a distractor, a concept hidden by occlusion
BOX_COLORS = {"class": (60, 255, 60), "distractor": (255, 170, 0), "hidden": (255, 40, 40)}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(image: Image.Image, tile: int) -> tuple[Image.Image, float]:
    """The image scaled to fit a tile (whole-number zoom for small images, so pixels stay sharp)."""
    w, h = image.size
    if max(w, h) <= tile:
        zoom = max(1, tile // max(w, h))
        return image.resize((w * zoom, h * zoom), Image.Resampling.NEAREST), float(zoom)
    zoom = tile / max(w, h)
    return image.resize(
        (max(1, round(w * zoom)), max(1, round(h * zoom))), Image.Resampling.BILINEAR
    ), zoom


def _draw_truth(
    draw: ImageDraw.ImageDraw, truth: ImageTruth, zoom: float, offset: tuple[int, int], font
) -> None:
    ox, oy = offset
    for inst in truth.instances:
        kind = "hidden" if not inst.visible else "distractor" if inst.distractor else "class"
        x0, y0, x1, y1 = (v * zoom for v in inst.box)
        box = (ox + x0, oy + y0, ox + x1 - 1, oy + y1 - 1)
        draw.rectangle(box, outline=BOX_COLORS[kind], width=2)
        label = str(inst.concept_id)
        tw = draw.textlength(label, font=font)
        draw.rectangle((box[0], box[1], box[0] + tw + 3, box[1] + 12), fill=(0, 0, 0))
        draw.text((box[0] + 2, box[1]), label, fill=BOX_COLORS[kind], font=font)


def _legend(gt: ConceptGroundTruth, class_names: Sequence[str]) -> list[str]:
    lines = [
        "boxes: green = class concept, orange = distractor, red = hidden by occlusion; number = concept id"
    ]
    names = [f"{i}: {name}" for i, name in enumerate(gt.concept_names)]
    for start in range(0, len(names), 6):
        lines.append("   ".join(names[start : start + 6]))
    sets = [
        f"{class_names[c]}: {' '.join(str(k) for k in sorted(s))}"
        for c, s in enumerate(gt.class_concepts)
    ]
    for start in range(0, len(sets), 6):
        lines.append("   ".join(sets[start : start + 6]))
    return lines


def contact_sheet(
    dataset: ImageDataset,
    path: str | os.PathLike,
    count: int = 24,
    columns: int = 6,
    truths: Sequence[ImageTruth] | None = None,
    ground_truth: ConceptGroundTruth | None = None,
    indices: Sequence[int] | None = None,
) -> Path:
    """Write a PNG grid of `count` images (evenly spread over the dataset) with their class names;
    with `truths` (aligned with the dataset) their concept boxes, with `ground_truth` a legend."""
    if len(dataset) == 0:
        raise DataConfigError(f"{dataset!r}: no images to show")
    if count < 1 or columns < 1:
        raise DataConfigError(
            f"contact sheet: count and columns must be at least 1, got {count}, {columns}"
        )
    if indices is None:
        indices = np.unique(
            np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
        ).tolist()
    font, small = _font(13), _font(11)
    caption = 18
    rows = -(-len(indices) // columns)
    legend = _legend(ground_truth, dataset.class_names) if ground_truth is not None else []
    width = columns * (TILE + 4) + 4
    legend_height = 16 * len(legend) + (8 if legend else 0)
    sheet = Image.new(
        "RGB", (max(width, 8), rows * (TILE + caption + 4) + 4 + legend_height), (24, 24, 24)
    )
    draw = ImageDraw.Draw(sheet)
    for n, index in enumerate(indices):
        x = 4 + (n % columns) * (TILE + 4)
        y = 4 + (n // columns) * (TILE + caption + 4)
        tile, zoom = _fit(dataset.image(index), TILE)
        sheet.paste(tile, (x, y))
        if truths is not None:
            _draw_truth(draw, truths[index], zoom, (x, y), small)
        name = dataset.class_names[int(dataset.labels[index])]
        draw.text((x, y + TILE + 2), f"#{index} {name}"[:32], fill=(235, 235, 235), font=font)
    top = rows * (TILE + caption + 4) + 8
    for i, line in enumerate(legend):
        draw.text((6, top + 16 * i), line, fill=(235, 235, 235), font=small)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    out = Path(path)
    write_bytes_atomic(out, buffer.getvalue())
    return out


def class_folder_names(class_names: Sequence[str]) -> list[str]:
    """Folder names that are safe on disk and sort in label order (so an ImageFolder reader gets
    the same class indices back); prefixed with the index only when needed."""
    safe = [re.sub(r"[\\/:*?\"<>|\x00-\x1f]", "-", name).strip() or "class" for name in class_names]
    if (
        len(set(safe)) == len(safe)
        and sorted(safe) == safe
        and not any(s.startswith(".") for s in safe)
    ):
        return safe
    width = len(str(len(safe) - 1))
    return [f"{i:0{width}d} {name}" for i, name in enumerate(safe)]


def export_splits(
    splits: DataSplits, out_dir: str | os.PathLike, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write both splits as OUT/train/<class>/<index>.png and OUT/test/...; for the concept data also
    OUT/ground_truth.json (its records name their files). The tree is built in a temporary folder
    and moved into place at the end, so OUT is never half-written."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DataConfigError(
            f"{out}: already exists (pass overwrite=True / --overwrite to replace it)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    folders = class_folder_names(splits.class_names)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        files: dict[str, list[str]] = {}
        for dataset in (splits.train, splits.test):
            for folder in folders:
                (tmp / dataset.split / folder).mkdir(parents=True)
            width = max(5, len(str(len(dataset) - 1)))
            files[dataset.split] = []
            for i in tqdm(
                range(len(dataset)),
                desc=f"writing {dataset.split}",
                unit="img",
                disable=not progress,
            ):
                rel = f"{dataset.split}/{folders[int(dataset.labels[i])]}/{i:0{width}d}.png"
                dataset.image(i).save(tmp / rel)
                files[dataset.split].append(rel)
        if splits.ground_truth is not None:
            record = splits.ground_truth.to_dict()
            record["class_names"] = list(splits.class_names)
            for split in ("train", "test"):
                for entry, rel in zip(record[split], files[split]):
                    entry["file"] = rel
            (tmp / "ground_truth.json").write_text(
                json.dumps(record, indent=1) + "\n", encoding="utf-8"
            )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
