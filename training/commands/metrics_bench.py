"""Time every metric at the sizes of a real evaluation (ResNet-50 on CUB-2011) on random data.

    python -m training metrics-bench [--dense-features 2048] [--json]

Sizes: 5,994 training images (features), 5,794 test images (maps), 200 classes, n = 50
selected features with k = 5 per class, 28 × 28 maps, F = 2,048 for the dense model. The data
are random, so the values mean nothing; the times are what this measures. Only the 50 maps
of one batch are held at a time, as in a real evaluation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from qpm_zoo.formatting import format_table, print_json

from ..metrics import (
    PointingGame,
    SIDAccumulator,
    class_independence,
    contrastiveness,
    correlation,
    edge_scores,
    match_features_to_concepts,
    structural_grounding,
)
from ..metrics.grounding import class_similarity_from_attributes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-images", type=int, default=5994)
    parser.add_argument("--test-images", type=int, default=5794)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--features", type=int, default=50, help="n, the selected features")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--map-size", type=int, default=28)
    parser.add_argument(
        "--dense-features", type=int, default=2048, help="F; 0 skips the dense rows"
    )
    parser.add_argument("--concepts", type=int, default=20, help="K for the ground-truth rows")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(0)

    def timed(name: str, size: str, run: Callable[[], float]) -> dict:
        start = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - start
        print(f"{name:<28} {size:<30} {seconds:8.2f} s", file=sys.stderr, flush=True)  # progress
        return {"metric": name, "size": size, "seconds": seconds, "value": float(value)}

    n, c, k, s = args.features, args.classes, args.k, args.map_size
    labels = rng.integers(0, c, args.train_images)
    weight = np.zeros((c, n))
    for row in weight:
        row[rng.choice(n, k, replace=False)] = 1.0
    selected = np.maximum(rng.normal(size=(args.train_images, n)), 0)
    test_predicted = rng.integers(0, c, args.test_images)
    feature_concept = rng.integers(0, args.concepts, n)

    # one batch of peaky random maps, reused for every batch: the time is the metric's only
    pool = rng.random((args.batch, n, s, s), dtype=np.float32) ** 8

    def map_batches():
        for lo in range(0, args.test_images, args.batch):
            yield lo, pool[: min(args.batch, args.test_images - lo)]

    def sid() -> float:
        acc = SIDAccumulator(weight, k)
        for lo, maps in map_batches():
            acc.update(maps, test_predicted[lo : lo + len(maps)])
        return acc.compute()

    annotations = [
        [
            (int(rng.integers(0, args.concepts)), (x, y, x + 60, y + 60), True)
            for x, y in rng.integers(0, 160, (4, 2))
        ]
        for _ in range(args.test_images)
    ]

    def pointing() -> float:
        game = PointingGame(feature_concept, image_width=224, image_height=224)
        for lo, maps in map_batches():
            game.update(maps, annotations[lo : lo + len(maps)])
        return game.compute().overall

    present = rng.random((args.test_images, args.concepts)) < 0.3
    test_features = rng.normal(size=(args.test_images, n))
    class_concepts = rng.random((c, args.concepts)) < 0.2
    truth = class_similarity_from_attributes(rng.random((c, 312)))

    size_n = f"N={args.train_images} n={n}"
    size_maps = f"N={args.test_images} n={n} {s}x{s}"
    rows = [
        timed("SID@k (streaming)", size_maps, sid),
        timed("Class-Independence", size_n, lambda: class_independence(selected, labels, c)),
        timed("Correlation", size_n, lambda: correlation(selected)),
        timed("Contrastiveness", size_n, lambda: contrastiveness(selected)),
        timed(
            "Structural Grounding",
            f"C={c}",
            lambda: structural_grounding(weight, truth, top=min(50, c * (c - 1) // 2)),
        ),
        timed(
            "concept matching (AUC)",
            f"N={args.test_images} n={n} K={args.concepts}",
            lambda: match_features_to_concepts(test_features, present).best_auc.mean(),
        ),
        timed(
            "edge scores",
            f"C={c} n={n} K={args.concepts}",
            lambda: edge_scores(weight, feature_concept, class_concepts).f1,
        ),
        timed("pointing game (streaming)", size_maps, pointing),
    ]
    if args.dense_features:
        dense = np.maximum(rng.normal(size=(args.train_images, args.dense_features)), 0)
        size_f = f"N={args.train_images} F={args.dense_features}"
        rows += [
            timed(
                "Class-Independence (dense)", size_f, lambda: class_independence(dense, labels, c)
            ),
            timed("Correlation (dense)", size_f, lambda: correlation(dense)),
            timed("Contrastiveness (dense)", size_f, lambda: contrastiveness(dense)),
        ]
    if args.json:
        print_json(rows)
    else:
        print(
            format_table(
                ["metric", "size", "seconds"],
                [[r["metric"], r["size"], r["seconds"]] for r in rows],
                ".3g",
            )
        )
    return 0
