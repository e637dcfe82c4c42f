"""Output of the command lines: plain-text renderings of predictions, class explanations,
comparisons and tables (for people), and JSON (for programs: the results' `to_dict()`)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from .explain import ClassComparison, ClassExplanation, Prediction, PredictionSet, SetFeature


def _shared(names: Sequence[str], limit: int = 4) -> str:
    if not names:
        return "used by no other class"
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"shared with {shown}{more}"


def format_prediction(pred: Prediction) -> str:
    """A prediction and its exact explanation, for people."""
    lines: list[str] = []
    e = pred.explanation
    lines.append(f"{pred.input}: {pred.label}  (p={pred.probability:.3f}, logit {pred.logit:.3f})")
    lines.append("  top: " + " | ".join(f"{s.label} {s.probability:.3f}" for s in pred.top_k))
    bias = f" {e.bias:+.3f} (bias)" if e.bias else ""
    lines.append(f"  logit {e.logit:.3f} ={bias} sum of {len(e.features)} feature contributions:")
    for f in e.features:
        weight = "" if f.weight == 1.0 else f" × weight {f.weight:+.3f}"
        lines.append(
            f"    {f.contribution:+8.3f}  {f.name} (activation {f.activation:+.3f}{weight}); "
            f"{_shared(f.shared_with)}"
        )
    if pred.prediction_set is not None:
        lines.extend(format_prediction_set(pred.prediction_set))
    return "\n".join(lines)


def _set_features(features: Sequence[SetFeature], limit: int = 8) -> str:
    if not features:
        return "none"
    parts = []
    for f in features[:limit]:
        weights = set(f.weights) - {0.0}
        signed = (
            ""
            if weights <= {1.0}
            else " (" + "/".join(f"{w:+.2g}" if w else "0" for w in f.weights) + ")"
        )
        parts.append(f.name + signed)
    more = f" and {len(features) - limit} more" if len(features) > limit else ""
    return ", ".join(parts) + more


def format_prediction_set(s: PredictionSet) -> list[str]:
    """The lines of a prediction set: its classes, what they share and what sets each apart."""
    if s.empty:
        text = (
            f"  empty set at {s.coverage:.0%} ({s.score}): no class's score is within the "
            f"threshold {s.threshold:.4g}; at this coverage no class needs to be listed, the "
            "image is among those the target lets go (the top-1 prediction is above)"
        )
        return [text]
    note = " (empty at this coverage; --never-empty put the top class in)" if s.filled else ""
    members = s.explanation.members
    lines = [
        f"  {s.coverage:.0%} prediction set ({s.score}, {len(members)} "
        f"{'class' if len(members) == 1 else 'classes'}){note}: "
        + " | ".join(f"{m.label} {m.probability:.3f}" for m in members)
    ]
    if len(members) > 1:
        lines.append(f"    shared by all: {_set_features(s.explanation.shared)}")
        for m in members:
            lines.append(f"    sets {m.label} apart: {_set_features(m.distinguishing)}")
    return lines


def format_class(expl: ClassExplanation) -> str:
    """A class's features and who shares them, for people."""
    lines: list[str] = []
    bias = f", bias {expl.bias:+.3f}" if expl.bias else ""
    lines.append(
        f"{expl.label} (class {expl.class_index}) uses {len(expl.features)} features{bias}:"
    )
    for f in expl.features:
        weight = "" if f.weight == 1.0 else f" weight {f.weight:+.3f},"
        desc = f" - {f.description}" if f.description else ""
        lines.append(f"  {f.name} [channel {f.channel}]{desc}:{weight} {_shared(f.shared_with)}")
    return "\n".join(lines)


def format_comparison(cmp: ClassComparison) -> str:
    """Two classes feature by feature, for people."""
    lines: list[str] = []
    a, b = cmp.class_a.label, cmp.class_b.label
    lines.append(f"{a} vs {b}")

    def line(title: str, items: Sequence[Any], weights: str) -> None:
        if not items:
            lines.append(f"  {title}: none")
            return
        parts = []
        for f in items:
            if weights == "both" and (f.weight_a != 1.0 or f.weight_b != 1.0):
                parts.append(f"{f.name} ({f.weight_a:+.2f} / {f.weight_b:+.2f})")
            elif weights == "a" and f.weight_a != 1.0:
                parts.append(f"{f.name} ({f.weight_a:+.2f})")
            elif weights == "b" and f.weight_b != 1.0:
                parts.append(f"{f.name} ({f.weight_b:+.2f})")
            else:
                parts.append(f.name)
        lines.append(f"  {title}: " + ", ".join(parts))

    line("shared", cmp.shared, "both")
    line(f"only {a}", cmp.only_a, "a")
    line(f"only {b}", cmp.only_b, "b")
    return "\n".join(lines)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4g"
) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""

    def cell(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return "-" if math.isnan(v) else format(v, floatfmt)
        return "-" if v is None else str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)
    ]
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows)
        if rows
        else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in text)
    return "\n".join(out)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
