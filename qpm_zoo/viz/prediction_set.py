"""The picture of a conformal prediction set (docs/method.md §9): the model input and the
features every class of the set shares, then one row per class with the features that set it
apart from the others, each drawn where it fires on the image."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..explain import ExplainedImage, InterpretableModel, SetFeature
from .heatmap import feature_heatmap
from .panels import (
    FOOTNOTE_LINE_INCHES,
    add_footnote,
    bare,
    draw_heatmap,
    draw_image,
    footnote_text,
    short_name,
    sign_colour,
    wrap,
)
from .render import new_figure

PANEL_INCHES = 2.0  #: side of one image panel
TITLE_INCHES = 0.6  #: room for a panel's title lines
HEADER_INCHES = 0.8  #: the figure's title and footnote
MAX_COLUMNS = 7  #: the row's first panel and up to six features
MAX_ROWS = 6  #: the shared row and up to five classes of the set


def prediction_set_figure(model: InterpretableModel, item: ExplainedImage) -> Any:
    """A matplotlib Figure of `item`'s prediction set (from `predict_with_maps(image,
    coverage=C)`): row 1 the input and the shared features, then per class (most probable
    first) its distinguishing features; a feature's title gives its activation and, where the
    classes weigh it differently (Q-SENN), each class's weight."""
    s = item.prediction.prediction_set
    if s is None:
        raise InputError(
            "prediction_set_figure needs a prediction with its set: "
            "model.predict_with_maps(image, coverage=0.9)"
        )
    if s.empty:
        return _empty_set_figure(item)
    members = s.explanation.members
    shown = members[: MAX_ROWS - 1]
    rows_features = [s.explanation.shared] + [m.distinguishing for m in shown]
    cols = max(2, min(MAX_COLUMNS, 1 + max(len(r) for r in rows_features)))
    rows = len(rows_features)
    width = max(cols * PANEL_INCHES, 6.0)
    legend = footnote_text(_legend(members, len(shown)), width)
    fig = new_figure(
        "qpm_zoo.viz.prediction_set_figure (qpm explain --coverage C --out)",
        width,
        rows * (PANEL_INCHES + TITLE_INCHES)
        + HEADER_INCHES
        + legend.count("\n") * FOOTNOTE_LINE_INCHES,
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    height, width_px = item.view.shape[:2]
    labels = [m.label for m in members]

    draw_image(axes[0, 0], item.view)
    axes[0, 0].set_title(f"model input\n{width_px}×{height} px", fontsize=8.5)
    axes[0, 0].set_xlabel(
        "shared by all →" if s.explanation.shared else "no feature shared by all",
        fontsize=8,
        color="0.3",
    )
    for r, features in enumerate(rows_features):
        if r > 0:
            m = shown[r - 1]
            _member_panel(axes[r, 0], m.label, m.probability, len(features))
        overflow = len(features) - (cols - 1)
        for c, f in enumerate(features[: cols - 1], start=1):
            heat = feature_heatmap(item.maps[f.index], (height, width_px))
            weight = f.weights[0] if r == 0 else f.weights[r - 1]
            draw_heatmap(axes[r, c], item.view, heat, weight)
            axes[r, c].set_title(_feature_title(f, labels), fontsize=7.5, color=sign_colour(weight))
        if overflow > 0:
            axes[r, cols - 1].set_xlabel(f"+{overflow} more features", fontsize=7.5, color="0.3")
        for c in range(1 + len(features[: cols - 1]), cols):
            axes[r, c].set_visible(False)

    note = " — empty at this coverage, the top class put in (never empty)" if s.filled else ""
    fig.suptitle(
        f"{short_name(item.prediction.input)}: {s.coverage:.0%} prediction set ({s.score}) of "
        f"{len(members)} {'class' if len(members) == 1 else 'classes'}{note}\n"
        + wrap(", ".join(labels), 110, 2),
        fontsize=10.5,
    )
    add_footnote(fig, legend)
    return fig


def _empty_set_figure(item: ExplainedImage) -> Any:
    """An empty set drawn as what it is: the input and a panel saying so, no members."""
    s, pred = item.prediction.prediction_set, item.prediction
    width = 2 * PANEL_INCHES + 2.0
    legend = footnote_text(_EMPTY_LEGEND, width)
    fig = new_figure(
        "qpm_zoo.viz.prediction_set_figure (qpm explain --coverage C --out), empty set",
        width,
        PANEL_INCHES + TITLE_INCHES + HEADER_INCHES + legend.count("\n") * FOOTNOTE_LINE_INCHES,
    )
    image_ax, text_ax = fig.subplots(1, 2, width_ratios=[PANEL_INCHES, PANEL_INCHES + 2.0])
    height, width_px = item.view.shape[:2]
    draw_image(image_ax, item.view)
    image_ax.set_title(f"model input\n{width_px}×{height} px", fontsize=8.5)
    bare(text_ax)
    for side in text_ax.spines.values():
        side.set_visible(False)
    text_ax.text(
        0.5,
        0.5,
        f"empty set at {s.coverage:.0%}\n\nno class's score is within\nthe threshold "
        f"{s.threshold:.4g}\n\ntop-1: {wrap(pred.label, 28, 1)} (p = {pred.probability:.2f})",
        ha="center",
        va="center",
        fontsize=9.5,
    )
    fig.suptitle(
        f"{short_name(pred.input)}: {s.coverage:.0%} prediction set ({s.score}) is empty",
        fontsize=10.5,
    )
    add_footnote(fig, legend)
    return fig


_EMPTY_LEGEND = (
    "An empty conformal set is a legitimate answer (docs/method.md §9): at this coverage no "
    "class needs to be listed, this image is among those the target lets go. The sets cover "
    "the true class with the calibrated probability counting such images as misses; "
    "--never-empty puts the top class in instead, which only raises coverage."
)


def _member_panel(ax: Any, label: str, probability: float | None, features: int) -> None:
    bare(ax)
    for side in ax.spines.values():
        side.set_visible(False)
    p = "" if probability is None else f"\np = {probability:.2f}"
    ax.text(0.5, 0.6, wrap(label, 20, 3) + p, ha="center", va="center", fontsize=9.5)
    what = "sets it apart →" if features else "nothing of its own:\nall its features are shared"
    ax.text(0.5, 0.15, what, ha="center", va="center", fontsize=7.5, color="0.3")


def _feature_title(f: SetFeature, labels: list[str]) -> str:
    activation = "" if f.activation is None else f"activation {f.activation:+.2f}"
    used = [w for w in f.weights if w != 0]
    if set(used) <= {1.0}:
        users = [lab for lab, w in zip(labels, f.weights) if w != 0]
        extra = "" if len(users) == len(labels) else wrap("used by " + ", ".join(users), 30, 1)
    else:
        extra = wrap(" ".join(f"{w:+.2g}" if w else "0" for w in f.weights), 30, 1)
    return "\n".join(part for part in (wrap(f.name, 28, 1), activation, extra) if part)


def _legend(members: Any, shown: int) -> str:
    text = (
        "The set holds the true class with the calibrated probability (docs/method.md §9). "
        "Shared: features every class of the set uses with the same sign, so they do not "
        "decide between them; a class's row: its features the others do not all share. Heat: "
        "where the feature fires on the model input, scaled to the map's own maximum."
    )
    if len(members) > shown:
        text += f"\nThe {len(members) - shown} least probable classes of the set are not drawn."
    return text
