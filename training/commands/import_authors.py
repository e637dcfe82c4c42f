"""Convert an authors' released QPM or Q-SENN state_dict into a qpm-zoo checkpoint folder.

    python -m training import-authors CHECKPOINT --arch resnet50 [--reduced-strides]
        --labels LABELS --image-size N --out DIR [--model-type qpm|qsenn]
        [--dataset CUB2011|StanfordCars|TravelingBirds|ImageNet] [--gt-crop | --no-gt-crop]
        [--reported-accuracy PERCENT] [--license ID] [--source URL]

The folder (config.json, model.safetensors, README.md) loads with `QPM.from_pretrained(DIR)`
and gives the authors' logits and features. The file cannot tell how the backbone's strides
were set nor at which size it was trained: give them as the authors trained it (their QPM
code's defaults are --reduced-strides and 224 px).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpm_zoo.formatting import print_json

from ..authors import (
    ARCHITECTURES,
    AUTHORS_RELEASES,
    DATASETS,
    PAPERS,
    AuthorsCheckpointError,
    convert,
    eval_preprocessing,
    read_authors_checkpoint,
    read_label_names,
)

LICENCE_NOTE = (
    "The authors' repository has no licence file, so the terms under which these weights may be "
    "used and shared are not stated there."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="the authors' .pth file")
    p.add_argument("--arch", required=True, choices=list(ARCHITECTURES), help="their backbone")
    p.add_argument(
        "--reduced-strides",
        action="store_true",
        help="layer3 and layer4 keep stride 1 (their --reduced_strides; QPM's default)",
    )
    p.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="LABELS",
        help="class names, one a line in class order (CUB's classes.txt works as it is)",
    )
    p.add_argument(
        "--image-size", required=True, type=int, metavar="N", help="input size it was trained at"
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="checkpoint folder")
    p.add_argument(
        "--model-type",
        choices=["qpm", "qsenn"],
        help="expected model type (default: found from the file; a class bias means Q-SENN)",
    )
    p.add_argument(
        "--dataset",
        default="CUB2011",
        choices=list(DATASETS),
        help="sets the authors' evaluation preprocessing for it (default CUB2011)",
    )
    p.add_argument(
        "--gt-crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CUB2011/TravelingBirds: trained on ground-truth bird crops, so images are resized "
        "to N x N without a centre crop (default: yes for those datasets, as in their code)",
    )
    p.add_argument(
        "--per-class", type=int, metavar="K", help="features per class to insist on (QPM: exact)"
    )
    p.add_argument(
        "--reported-accuracy",
        type=float,
        metavar="PERCENT",
        help="top-1 accuracy the authors report for this file (shown on the card as theirs)",
    )
    p.add_argument(
        "--source", default=AUTHORS_RELEASES, metavar="URL", help="where the file was published"
    )
    p.add_argument(
        "--license",
        metavar="ID",
        help="license to publish the converted weights under (required by publish)",
    )
    p.add_argument(
        "--hub-dataset", metavar="ID", help="Hub dataset id for the card's metadata (optional)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the checkpoint already in --out"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _gt_crop(args: argparse.Namespace) -> bool:
    if args.gt_crop is None:
        return DATASETS[args.dataset].has_boxes
    return args.gt_crop


def _note(args: argparse.Namespace, arch: str, gt_crop: bool) -> str:
    images = "ground-truth bird crops" if gt_crop else "whole images"
    return (
        f"Trained by the authors with their code on {args.dataset} ({images}, {args.image_size} "
        f"px, {arch}{', reduced strides' if args.reduced_strides else ''}); the preprocessing "
        f"reproduces their test transform. {LICENCE_NOTE}"
    )


def run(args: argparse.Namespace) -> int:
    from qpm_zoo.card import README_NAME, render_model_card
    from qpm_zoo.config import CONFIG_NAME, Provenance, write_text_atomic

    if args.image_size < 1:
        raise AuthorsCheckpointError(f"--image-size must be positive, got {args.image_size}")
    if args.reported_accuracy is not None and not 0 < args.reported_accuracy <= 100:
        raise AuthorsCheckpointError(
            f"--reported-accuracy is a percentage in (0, 100], got {args.reported_accuracy}"
        )
    if args.out.exists() and not args.out.is_dir():
        raise AuthorsCheckpointError(f"{args.out}: exists and is not a folder")
    if (args.out / CONFIG_NAME).exists() and not args.overwrite:
        raise AuthorsCheckpointError(
            f"{args.out}: already holds a checkpoint; pass --overwrite to replace it"
        )
    gt_crop = _gt_crop(args)
    preprocessing = eval_preprocessing(args.dataset, args.image_size, gt_crop)
    labels = read_label_names(args.labels)
    checkpoint = read_authors_checkpoint(args.checkpoint, args.arch)
    model_type = args.model_type or checkpoint.head.model_type
    reported = {}
    if args.reported_accuracy is not None:
        reported["accuracy"] = round(args.reported_accuracy / 100, 6)
    provenance = Provenance(
        source=args.source,
        file=checkpoint.path.name,
        sha256=checkpoint.sha256,
        paper=PAPERS[model_type],
        reported_metrics=reported,
        note=_note(args, checkpoint.arch, gt_crop),
    )
    publish = {
        key: value
        for key, value in (("license", args.license), ("dataset", args.hub_dataset))
        if value
    }
    model = convert(
        checkpoint,
        labels,
        reduced_strides=args.reduced_strides,
        preprocessing=preprocessing,
        provenance=provenance,
        model_type=args.model_type,
        per_class=args.per_class,
        training={"publish": publish} if publish else None,
    )
    model.save_pretrained(args.out)
    write_text_atomic(args.out / README_NAME, render_model_card(model.config))
    config = model.config
    result = {
        "out": str(args.out),
        "model_type": config.model_type,
        "backbone": config.backbone.name,
        "reduced_strides": config.backbone.reduced_strides,
        "num_classes": config.num_classes,
        "n_features": config.n_features,
        "k": config.k,
        "file": provenance.file,
        "sha256": provenance.sha256,
        "preprocessing": config.preprocessing.to_dict(),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"converted {provenance.file} (sha256 {provenance.sha256[:12]}…): "
            f"{config.model_type} on {config.backbone.name}, {config.num_classes} classes, "
            f"n={config.n_features}, k={config.k}"
        )
        print(f"written: {args.out} (config.json, model.safetensors, README.md)")
        if args.license is None:
            print("note: publishing it needs --license (the authors state no licence)")
    return 0
