"""What the commands print about runs and checkpoints: the few numbers of a fit, metric tables."""

from __future__ import annotations

from qpm_zoo.formatting import format_table


def summary_rows(summaries: dict[str, dict]) -> list[tuple[str, str]]:
    """The few numbers a person wants to see after a run (from the stages' summaries)."""
    rows = []
    dense = summaries.get("dense", {}).get("test_accuracy")
    final = (summaries.get("finetune") or summaries.get("qsenn") or {}).get("test_accuracy")
    if dense is not None:
        rows.append(("dense accuracy", f"{dense:.4f}"))
    if final is not None:
        rows.append(("final accuracy", f"{final:.4f}"))
    if dense and final is not None:
        rows.append(("final / dense", f"{final / dense:.3f}"))
    solve = summaries.get("assignment", {})
    if solve:
        gap = solve.get("gap")
        gap_text = "n/a" if gap is None else f"{100 * gap:.2f} %"
        text = (
            f"objective {solve['objective']:.3f}, gap {gap_text}, {solve['status']}, "
            f"{solve['wall_s']:.1f} s"
        )
        rows.append(("assignment", text))
    for target in summaries.get("calibrate", {}).get("targets", []):
        rows.append((f"{target['coverage']:.0%} prediction sets", set_text(target)))
    return rows


def set_text(target: dict) -> str:
    """A calibrated coverage target in words: what its sets did on the test split."""
    if target.get("test_coverage") is None:
        return f"threshold {target['threshold']:.4f} (not measured on test images)"
    return (
        f"cover {target['test_coverage']:.1%} of test images, "
        f"{target['test_mean_size']:.2f} classes on average, "
        f"{target.get('test_empty_share', 0.0):.1%} empty, "
        f"worst class {target['test_worst_class']} {target['test_worst_class_coverage']:.1%}"
    )


def metric_labels(metrics: dict) -> dict[str, str]:
    """Table labels of the metrics present (dense_ ones fold into their base row), in order."""
    from qpm_zoo.card import metric_info, metric_rank

    keys = sorted({k.removeprefix("dense_") for k in metrics}, key=lambda k: (metric_rank(k), k))
    return {k: metric_info(k).name for k in keys}


def metrics_table(metrics: dict) -> str:
    """One row per metric: the model's value and the dense model's."""
    rows = []
    for key, label in metric_labels(metrics).items():
        final, dense = metrics.get(key), metrics.get(f"dense_{key}")
        if final is None and dense is None:
            continue
        rows.append((label, final, dense))
    return format_table(["metric", "model", "dense"], rows)
