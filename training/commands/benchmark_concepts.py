"""The known-concept benchmark: fit the demo recipe (or a config) once per seed, aggregate.

Each seed is an ordinary cached fit in OUT/seed-S: rerunning with other assignment settings
(e.g. --set assignment.redundancy_weight=20) reruns only the assignment, fine-tuning and
evaluation; --dense-from OTHER_OUT reuses another benchmark's dense models seed by seed.
Prints one progress line per seed, then mean ± std of every metric, the number of classes
that use two features matched to one concept and of true concepts no selected feature
matches; --explain-duplicates adds why (docs/method.md §6). OUT/benchmark.json holds the
per-seed values, the aggregate and the full duplicate reports; --json prints it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qpm_zoo.formatting import format_table, print_json

from .options import add_override_argument

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        metavar="SEED",
        help="training seeds (default 0 1 2)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="training config on the known-concept data (default: configs/demo.yaml)",
    )
    add_override_argument(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/benchmark-concepts"),
        help="folder of the seeds' run folders (default runs/benchmark-concepts)",
    )
    parser.add_argument(
        "--dense-from",
        type=Path,
        metavar="OUT",
        help="another benchmark folder whose seed-S dense models to reuse",
    )
    parser.add_argument(
        "--explain-duplicates",
        action="store_true",
        help="print each duplicate pair and missing concept in the assignment's terms",
    )
    parser.add_argument(
        "--sweep-redundancy",
        type=float,
        nargs="+",
        metavar="W",
        help="also solve each seed's assignment with these redundancy weights w_R and score "
        "them before fine-tuning (dense channels' concept matching)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="the fits' log lines on the console too"
    )


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from ..concept_benchmark import (
        METRICS,
        BenchmarkResult,
        aggregate,
        run_seed,
        seed_configs,
        seed_dir,
        write_result,
    )
    from ..config import load_fit_config
    from ..logs import setup_logging

    configs = seed_configs(load_fit_config(args.config, args.overrides), args.seeds)
    results = []
    for number, (seed, config) in enumerate(zip(args.seeds, configs), 1):
        out = seed_dir(args.out, seed)
        setup_logging(out / "fit.log", quiet=not args.verbose)
        started = time.monotonic()
        dense_from = None if args.dense_from is None else seed_dir(args.dense_from, seed)
        result = run_seed(config, out, dense_from, args.sweep_redundancy)
        results.append(result)
        m = result.metrics
        print(
            f"[{number}/{len(args.seeds)}] seed {seed}: accuracy {m['accuracy']:.4f} "
            f"(dense {m.get('dense_accuracy') or float('nan'):.4f}), edge F1 "
            f"{m['concept_edge_f1']:.3f}, classes with a duplicated concept: "
            f"{m['duplicate_classes']}, concepts missing: {m['missing_concepts']} "
            f"({time.monotonic() - started:.0f} s)",
            file=sys.stderr if args.json else sys.stdout,  # --json: stdout is the JSON alone
            flush=True,
        )
    bench = BenchmarkResult(str(args.config), results, aggregate(results))
    path = write_result(bench, args.out)
    if args.json:
        print_json(bench.to_dict())
        return 0
    labels = dict(METRICS)
    rows = [
        (labels[key], f"{a.mean:.4f} ± {a.std:.4f}", f"{a.min:.4f}", f"{a.max:.4f}")
        for key, a in bench.aggregate.items()
    ]
    print(f"\n== {len(results)} seeds ({', '.join(map(str, args.seeds))}) " + "=" * 40)
    print(format_table(["metric", "mean ± std", "min", "max"], rows))
    if args.explain_duplicates:
        for result in results:
            print(f"\n== seed {result.seed}: duplicates " + "=" * 40)
            print(explain_text(result.duplicates))
    if args.sweep_redundancy:
        print("\n== redundancy weight sweep, before fine-tuning (dense matching) " + "=" * 10)
        print(sweep_text(results))
    print(f"\nper-seed values and duplicate reports: {path}")
    return 0


def explain_text(report) -> str:
    """A DuplicateReport in a few lines and two tables."""
    lines = [
        (
            f"α = 1000/(k·C) = {report.alpha:.2f} (paper's CUB recipe: {report.paper_alpha:.2f}); "
            f"w_R = {report.redundancy_weight:g}; τ = {report.tau:.3f} ({report.penalised_pairs} "
            f"penalised pairs, largest penalty {report.max_penalty:.3f})"
        )
    ]
    if report.pairs:
        rows = [
            (
                p.class_name,
                p.concept_name,
                f"{p.channels[0]}, {p.channels[1]}",
                f"{p.auc[0]:.3f}, {p.auc[1]:.3f}",
                f"{p.redundancy:.3f}",
                "yes" if p.penalised else "no",
                f"{p.penalty:.3f}",
                f"{p.similarity[0]:.2f}, {p.similarity[1]:.2f}",
            )
            for p in report.pairs
        ]
        lines.append(
            format_table(
                ["class", "concept", "channels", "AUC", "R", "R ≥ τ", "w_R·R̃", "α·A (class)"],
                rows,
            )
        )
    else:
        lines.append("no class uses two features matched to one concept")
    if report.missing:
        rows = [
            (
                m.concept_name,
                f"{m.best_selected_auc:.3f}",
                f"{m.dense_channel} ({m.dense_auc:.3f})",
                "yes" if m.dense_channel_selected else "no",
                "-" if m.swap_out is None else str(m.swap_out),
                "-" if m.similarity_loss is None else f"{m.similarity_loss:.2f}",
                "-" if m.redundancy_saved is None else f"{m.redundancy_saved:.3f}",
                "-" if m.break_even_weight is None else f"{m.break_even_weight:.1f}",
            )
            for m in report.missing
        ]
        lines.append(
            format_table(
                [
                    "missing concept",
                    "best selected AUC",
                    "best dense channel (AUC)",
                    "selected",
                    "swap out",
                    "Z_A+Z_B lost",
                    "R̃ saved",
                    "break-even w_R",
                ],
                rows,
            )
        )
    return "\n".join(lines)


def sweep_text(results) -> str:
    """Per redundancy weight: edge F1 over the seeds, and how many seeds keep a duplicate."""
    import numpy as np

    weights = [p.redundancy_weight for p in results[0].sweep]
    rows = []
    for i, w in enumerate(weights):
        points = [r.sweep[i] for r in results]
        f1 = np.array([p.edge_f1 for p in points])
        rows.append(
            (
                f"{w:g}",
                f"{f1.mean():.3f} ± {f1.std(ddof=1) if len(f1) > 1 else 0.0:.3f}",
                " ".join(f"{p.edge_f1:.3f}" for p in points),
                sum(p.duplicate_classes > 0 for p in points),
                " ".join(str(p.duplicate_classes) for p in points),
                " ".join(str(p.missing_concepts) for p in points),
                f"{np.mean([p.z_a for p in points]):.1f}",
            )
        )
    return format_table(
        [
            "w_R",
            "edge F1 mean ± std",
            "per seed",
            "seeds with duplicates",
            "duplicate classes",
            "missing concepts",
            "Z_A",
        ],
        rows,
    )
