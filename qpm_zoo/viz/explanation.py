"""The picture of one prediction: the model input and, for each of the predicted class's
features, where that feature fires, with its exact share of the logit."""

from __future__ import annotations

import math
from typing import Any

from ..errors import InputError
from ..explain import ExplainedImage, FeatureContribution, InterpretableModel
from ..preprocess import is_batch
from .heatmap import feature_heatmap
from .panels import (
    FOOTNOTE_LINE_INCHES,
    add_footnote,
    draw_heatmap,
    draw_image,
    footnote_text,
    short_name,
    sign_colour,
    wrap,
)
from .render import new_figure

PANEL_INCHES = 2.4  #: side of one image panel
TITLE_INCHES = 0.75  #: room for a panel's three title lines and its caption
HEADER_INCHES = 0.75  #: the figure's title and footnote
MAX_COLUMNS = 6  #: the image and k=5 features fit in one row


def explanation_figure(
    model: InterpretableModel, image: Any, *, columns: int = MAX_COLUMNS, top_k: int = 3
) -> Any:
    """A matplotlib Figure explaining the prediction for one image.

    `image` is a path, PIL image or array (predicted here with `model`, a QPM or QPMOnnx), or an
    ExplainedImage already computed. The first panel is the model input (the resized, centre-
    cropped image the network saw) with the top classes; then one panel per feature of the
    predicted class, largest contribution first: its map upsampled over the input, scaled to
    the map's maximum, titled with the feature's name, its contribution and its activation.
    """
    if is_batch(image):
        raise InputError(
            f"explanation_figure draws one image; got a list of {len(image)} (make one figure each)"
        )
    item = image if isinstance(image, ExplainedImage) else model.predict_with_maps(image, top_k)[0]
    pred, expl = item.prediction, item.prediction.explanation
    panels = 1 + len(expl.features)
    cols = max(1, min(columns, panels))
    rows = math.ceil(panels / cols)
    fig_width = max(cols * PANEL_INCHES, 5.0)
    legend = footnote_text(_legend(any(f.weight < 0 for f in expl.features)), fig_width)
    fig = new_figure(
        "qpm_zoo.viz.explanation_figure (qpm explain --out)",
        fig_width,
        rows * (PANEL_INCHES + TITLE_INCHES)
        + HEADER_INCHES
        + legend.count("\n") * FOOTNOTE_LINE_INCHES,
    )
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    height, width = item.view.shape[:2]

    draw_image(axes[0], item.view)
    axes[0].set_title(f"model input\n{width}×{height} px", fontsize=9)
    runners = [f"{s.label}: {s.probability:.2f}" for s in pred.top_k[:top_k]]
    axes[0].set_xlabel("\n".join(wrap(r, 30, 1) for r in runners), fontsize=7.5, color="0.3")

    for f, ax in zip(expl.features, axes[1:]):
        heat = feature_heatmap(item.maps[f.index], (height, width))
        draw_heatmap(ax, item.view, heat, f.weight)
        ax.set_title(_feature_title(f), fontsize=8.5, color=sign_colour(f.contribution))
        ax.set_xlabel(_users(f), fontsize=7.5, color="0.35")
    for ax in axes[panels:]:
        ax.set_visible(False)

    bias = f"{expl.bias:+.2f} (bias) + " if expl.bias else ""
    fig.suptitle(
        f"{short_name(pred.input)}: {pred.label}  (p = {pred.probability:.2f})\n"
        f"logit {expl.logit:.2f} = {bias}sum of the {len(expl.features)} feature contributions below",
        fontsize=11,
    )
    add_footnote(fig, legend)
    return fig


def _feature_title(f: FeatureContribution) -> str:
    weight = f"{f.weight:g}" if f.weight == 1.0 else f"{f.weight:+.2f}"
    return (
        f"{wrap(f.name, 30, 1)}\n"
        f"contribution {f.contribution:+.2f}\n"
        f"= {weight} × activation {f.activation:+.2f}"
    )


def _users(f: FeatureContribution, limit: int = 2) -> str:
    if not f.shared_with:
        return "used by no other class"
    names = ", ".join(wrap(n, 18, 1) for n in f.shared_with[:limit])
    more = f" +{len(f.shared_with) - limit}" if len(f.shared_with) > limit else ""
    return wrap(f"also used by {names}{more}", 34)


def _legend(negative: bool) -> str:
    text = (
        "Heat: where the feature fires on the model input, scaled to the map's own maximum "
        "(transparent: no activation). Activations are normalised (x − mean) / std."
    )
    if negative:
        text += "\nWarm colours: weight > 0, counts for the class; cool colours: weight < 0, counts against it."
    return text
