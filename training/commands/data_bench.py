"""Time the known-concept generator against reading the same images from PNG files.

Generating on the fly must cost about as much as loading a pre-rendered file, so the dataset
needs no files. Run: python -m training data-bench [--sizes 64 96] [--images 300]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from PIL import Image

from qpm_zoo.formatting import format_table, print_json

from ..data.concepts import ConceptGenerator
from ..data.config import ConceptsConfig


def per_image_ms(work: Callable[[int], object], count: int) -> float:
    start = time.process_time()  # CPU time: robust to other jobs sharing the cores
    for i in range(count):
        work(i)
    return (time.process_time() - start) / count * 1e3


def measure(size: int, count: int) -> dict:
    gen = ConceptGenerator(ConceptsConfig(image_size=size), seed=0)
    files = []
    for i in range(count):
        buffer = io.BytesIO()
        gen.image("train", i).save(buffer, format="PNG")
        files.append(buffer.getvalue())

    def read_png(i: int) -> Image.Image:
        with Image.open(io.BytesIO(files[i])) as im:
            return im.convert("RGB")

    layout = per_image_ms(lambda i: gen.layout("train", i), count)
    generate = per_image_ms(lambda i: gen.image("train", i), count)
    png = per_image_ms(read_png, count)
    return {"image_size": size, "layout_ms": layout, "generate_ms": generate, "png_read_ms": png}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96], help="image sides (px)")
    parser.add_argument("--images", type=int, default=300, help="images timed per size")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args: argparse.Namespace) -> int:
    rows = [measure(size, args.images) for size in args.sizes]
    if args.json:
        print_json(rows)
        return 0
    table = [
        (
            r["image_size"],
            r["layout_ms"],
            r["generate_ms"],
            r["png_read_ms"],
            r["generate_ms"] / r["png_read_ms"],
        )
        for r in rows
    ]
    headers = [
        "px",
        "layout ms (truth only)",
        "generate ms (ours)",
        "PNG read ms (reference)",
        "ratio",
    ]
    print(format_table(headers, table, floatfmt=".3f"))
    return 0
