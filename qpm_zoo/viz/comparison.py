"""Two classes side by side, like the QPM paper's class comparisons: an example image of each
class, and on both, the maps of the features they share and of those only one of them uses.

For QPM the shared features cancel in the difference of the two logits, so the "only A" and
"only B" columns are exactly what decides between the classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..explain import ComparedFeature, ExplainedImage, InterpretableModel
from .examples import pick_class_examples
from .heatmap import normalise_map, upsample_map
from .panels import (
    FOOTNOTE_LINE_INCHES,
    add_footnote,
    bare,
    draw_heatmap,
    draw_image,
    footnote_text,
    note,
    short_name,
    wrap,
)
from .render import new_figure

PANEL_INCHES = 2.0  #: side of one image panel
GROUP_TITLE_INCHES = 0.35  #: "shared", "only A", "only B"
LINE_INCHES = 0.17  #: one line of a column title
FOOTNOTE_INCHES = 0.3  #: the footnote's first line
EXAMPLES_WIDTH = 1.15  #: the examples column, in panels: room for the row labels
GROUP_FONT = 10
TITLE_FONT = 8.5
#: Colours of class A, class B and the shared features, and the light tints of their groups.
COLOURS = {"a": "#c45a00", "b": "#00786f", "shared": "#4d4d4d"}
TINTS = {"a": "#fdf1e7", "b": "#e6f4f2", "shared": "#f3f3f3"}


def class_pair(
    model: InterpretableModel, class_a: int | str, class_b: int | str
) -> tuple[int, int]:
    """The two classes' indices; an InputError unless they are two different known classes."""
    ia, ib = model.class_index(class_a), model.class_index(class_b)
    if ia == ib:
        raise InputError(f"compare two different classes; got {model.label_names[ia]!r} twice")
    return ia, ib


def comparison_figure(
    model: InterpretableModel, class_a: int | str, class_b: int | str, images: Any
) -> Any:
    """A matplotlib Figure comparing two classes (names or indices) on example images.

    `images` are candidates (a list of paths, PIL images or arrays, or one folder): for
    each class the one the model predicts as that class with the highest probability is shown
    (an InputError names a class none of them is predicted as). Or pass the two examples as
    ExplainedImages, e.g. from `pick_class_examples`. Rows: class A's and class B's example;
    columns: the features grouped as shared / only A / only B. Both maps of a feature share one
    scale, so a column shows on which image the feature fires more.
    """
    ia, ib = class_pair(model, class_a, class_b)
    if (
        isinstance(images, (list, tuple))
        and len(images) == 2
        and all(isinstance(x, ExplainedImage) for x in images)
    ):
        examples = list(images)
    else:
        examples = pick_class_examples(model, images, [ia, ib])
    cmp = model.compare(ia, ib)
    qpm = model.config.model_type == "qpm"
    groups = [
        ("shared", "shared", cmp.shared),
        ("a", f"only A: {cmp.class_a.label}", cmp.only_a),
        ("b", f"only B: {cmp.class_b.label}", cmp.only_b),
    ]
    titles = {key: [_column_title(f, key, qpm) for f in features] for key, _, features in groups}
    # Every column title gets as many lines as the longest, so that all rows line up.
    lines = max([t.count("\n") + 1 for ts in titles.values() for t in ts] + [1])
    widths = [EXAMPLES_WIDTH] + [max(1, len(features)) for _, _, features in groups]
    fig_width = sum(widths) * PANEL_INCHES + 0.5
    legend = footnote_text(
        "Heat: where the feature fires on the model input; both maps of a column share one scale "
        "(the larger maximum). Numbers: normalised activation (x − mean) / std on that image."
        + (
            ""
            if qpm
            else "\nWarm colours: the class's weight on the feature is positive; cool: negative."
        ),
        fig_width,
    )
    fig = new_figure(
        "qpm_zoo.viz.comparison_figure (qpm compare --out)",
        fig_width,
        2 * PANEL_INCHES
        + GROUP_TITLE_INCHES
        + lines * LINE_INCHES
        + FOOTNOTE_INCHES
        + legend.count("\n") * FOOTNOTE_LINE_INCHES,
    )
    parts = fig.subfigures(1, len(widths), width_ratios=widths, wspace=0.0)

    parts[0].suptitle(" ", fontsize=GROUP_FONT, fontweight="bold")
    image_axes = parts[0].subplots(2, 1)
    image_axes[0].set_title(_pad("examples", lines), fontsize=TITLE_FONT)
    for ax, example, key, label in zip(
        image_axes, examples, "ab", (cmp.class_a.label, cmp.class_b.label)
    ):
        draw_image(ax, example.view)
        ax.set_ylabel(
            wrap(f"{key.upper()}: {label}", 24), color=COLOURS[key], fontsize=10, fontweight="bold"
        )
        diff = float(example.logits[ia] - example.logits[ib])
        note(
            ax,
            f"{wrap(short_name(example.name), 24, 1)}, p = {example.prediction.probability:.2f}\n"
            f"logit A − logit B = {diff:+.2f}",
        )

    for part, (key, title, features) in zip(parts[1:], groups):
        part.set_facecolor(TINTS[key])
        part.suptitle(
            wrap(title, 24 * max(1, len(features)), 1),
            color=COLOURS[key],
            fontsize=GROUP_FONT,
            fontweight="bold",
        )
        axes = part.subplots(2, max(1, len(features)), squeeze=False)
        if not features:
            for ax in axes[:, 0]:
                bare(ax)
                ax.set_facecolor(TINTS[key])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            axes[0, 0].set_title(_pad("", lines), fontsize=TITLE_FONT)
            axes[0, 0].text(
                0.5,
                0.0,
                "no features",
                transform=axes[0, 0].transAxes,
                ha="center",
                va="center",
                fontsize=9,
                color="0.4",
            )
            continue
        for j, (f, column_title) in enumerate(zip(features, titles[key])):
            _draw_column(axes[:, j], f, examples, key)
            axes[0, j].set_title(_pad(column_title, lines), fontsize=TITLE_FONT)

    add_footnote(fig, legend)
    return fig


def _column_title(f: ComparedFeature, key: str, qpm: bool) -> str:
    title = wrap(f.name, 24)
    if not qpm:
        title += (
            "\n"
            + {
                "shared": f"w {f.weight_a:+.2f} / {f.weight_b:+.2f}",
                "a": f"w {f.weight_a:+.2f}",
                "b": f"w {f.weight_b:+.2f}",
            }[key]
        )
    return title


def _pad(title: str, lines: int) -> str:
    """`title` with blank lines on top up to `lines` lines, so titles of any length align."""
    return "\n" * (lines - title.count("\n") - 1) + title


def _draw_column(
    axes: Sequence[Any], f: ComparedFeature, examples: Sequence[ExplainedImage], key: str
) -> None:
    """One feature on both examples, on a common scale; its colour follows the sign of the
    weight of the class it counts for in that cell (A's for row A of a shared feature)."""
    size = examples[0].view.shape[:2]
    ups = [upsample_map(example.maps[f.index], size) for example in examples]
    top = max(float(up.max()) for up in ups)
    for row, (ax, example, up) in enumerate(zip(axes, examples, ups)):
        weight = {"a": f.weight_a, "b": f.weight_b, "shared": (f.weight_a, f.weight_b)[row]}[key]
        draw_heatmap(ax, example.view, normalise_map(up, top), weight)
        note(ax, f"{float(example.features[f.index]):+.2f}")
