"""Look at a training dataset: a summary table, a contact sheet PNG, or the splits written to disk.

python -m training data --dataset concepts --sheet concepts.png
python -m training data --config configs/demo.yaml --export runs/data/concepts --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpm_zoo.formatting import format_table, print_json

from ..config_files import read_config_file
from ..data.build import build_datasets
from ..data.config import DATASETS, DataConfig
from ..data.preview import contact_sheet, export_splits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("which data")
    source.add_argument(
        "--config", type=Path, help="training config (.yaml/.toml); its 'data:' section is used"
    )
    source.add_argument(
        "--dataset",
        choices=DATASETS,
        default="concepts",
        help="without --config (default: concepts)",
    )
    source.add_argument("--root", help="dataset folder (without --config)")
    source.add_argument("--seed", type=int, default=0, help="without --config")
    out = parser.add_argument_group("what to do")
    out.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    out.add_argument(
        "--split", choices=("train", "test"), default="train", help="split shown on the sheet"
    )
    out.add_argument("--count", type=int, default=24, help="images on the sheet (default 24)")
    out.add_argument("--export", type=Path, help="write both splits as an ImageFolder tree here")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --export folder")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")


def load_config(args: argparse.Namespace) -> DataConfig:
    """The data section of --config, or the dataset --dataset/--root/--seed name."""
    if args.config is not None:
        data = read_config_file(args.config)
        return DataConfig.from_dict(data.get("data"), str(args.config), base_dir=args.config.parent)
    data = {"name": args.dataset, "seed": args.seed}
    if args.root is not None:
        data["root"] = args.root
    return DataConfig.from_dict(data, "command line")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    splits = build_datasets(cfg)
    summary = splits.summary()
    if args.sheet is not None:
        dataset = splits.train if args.split == "train" else splits.test
        truth = splits.ground_truth
        contact_sheet(
            dataset,
            args.sheet,
            count=args.count,
            truths=None if truth is None else truth.images(args.split),
            ground_truth=truth,
        )
        summary["sheet"] = str(args.sheet)
    if args.export is not None:
        export_splits(splits, args.export, overwrite=args.overwrite, progress=not args.json)
        summary["export"] = str(args.export)
    if splits.ground_truth is not None:
        gt = splits.ground_truth
        summary["concept_names"] = list(gt.concept_names)
        summary["class_concepts"] = [sorted(s) for s in gt.class_concepts]
    if args.json:
        print_json(summary)
        return 0
    counts = [
        (name, len(d), int(d.class_counts().min()), int(d.class_counts().max()))
        for name, d in (("train", splits.train), ("test", splits.test))
    ]
    print(f"{cfg.name}: {splits.num_classes} classes")
    print(format_table(["split", "images", "min/class", "max/class"], counts))
    if splits.ground_truth is not None:
        gt = splits.ground_truth
        rows = [
            (splits.class_names[c], ", ".join(gt.concept_names[k] for k in sorted(s)))
            for c, s in enumerate(gt.class_concepts)
        ]
        print()
        print(format_table(["class", "concepts"], rows))
    for key in ("sheet", "export"):
        if key in summary:
            print(f"wrote {summary[key]}")
    return 0
