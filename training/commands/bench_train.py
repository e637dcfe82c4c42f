"""Time our training step (cross entropy + feature diversity loss, with feature maps) against
a plain timm training step (cross entropy only) on the same model and batch.

Run: python -m training bench-train --backbone resnet18 --image-size 224 --batch 16
--steps 10 [--precision bf16] [--channels-last]; under
`torchrun --nproc_per_node N -m training bench-train ...` it also reports the scaling.
"""

from __future__ import annotations

import argparse

from qpm_zoo.formatting import format_table, print_json

from ..runtime.precision import PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="resnet18", help="timm model name")
    parser.add_argument("--image-size", type=int, default=224, help="input side (px)")
    parser.add_argument("--batch", type=int, default=16, help="images per step and process")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--classes", type=int, default=200, help="classes of the linear layer")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args: argparse.Namespace) -> int:
    from qpm_zoo.errors import UsageError

    from ..runtime import Distributed, resolve_device
    from ..train_bench import BenchSettings, run_bench, summarise

    for name in ("image_size", "batch", "steps", "rounds", "classes", "warmup"):
        least = 0 if name == "warmup" else 1
        if getattr(args, name) < least:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {least}")
    dist = Distributed.from_env()
    device = resolve_device(args.device, dist.local_rank)
    settings = BenchSettings(
        backbone=args.backbone,
        image_size=args.image_size,
        batch=args.batch,
        steps=args.steps,
        rounds=args.rounds,
        warmup=args.warmup,
        precision=args.precision,
        channels_last=args.channels_last,
        num_classes=args.classes,
    )
    dist.init(device)
    try:
        rows = run_bench(settings, device)
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    rows = summarise(rows)
    if args.json:
        print_json({"settings": vars(args) | {"device": str(device)}, "rows": rows})
        return 0
    headers = ["processes", "ours img/s", "plain img/s", "ours / plain", "scaling", "ours ms/step"]
    table = [
        (
            r["processes"],
            r["images_per_s"],
            r["plain_images_per_s"],
            r["ratio"],
            r["scaling"],
            r["step_ms"],
        )
        for r in rows
    ]
    print(
        f"{settings.backbone}, {settings.image_size} px, batch {settings.batch}, "
        f"{settings.precision}{', channels_last' if settings.channels_last else ''}, {device}"
    )
    print(format_table(headers, table, floatfmt=".2f"))
    return 0
