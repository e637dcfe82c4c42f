"""The explorer's panels as HTML: a prediction with its heatmaps and exact sum, a class's global
explanation, two classes compared, and the class × feature assignment.

Pure functions of the library's result objects (no Gradio here), so they are tested directly.
Every number is shown rounded and also kept exactly in a `data-` attribute, which is what the
browser test compares with `model.predict`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape

from ..explain import (
    ClassComparison,
    ClassExplanation,
    ExplainedImage,
    InterpretableModel,
    PredictionSet,
)
from .heat import model_input, overlay, png_data_uri

#: The page's own styles (passed to Gradio's launch).
CSS = """
.qpm-prediction h2 { margin: 0 0 .2em 0; }
.qpm-head { display: flex; gap: 1.2em; align-items: flex-start; flex-wrap: wrap; }
.qpm-head img, .qpm-feature img { width: 196px; height: auto; image-rendering: pixelated;
  border-radius: 4px; }
.qpm-features { display: flex; flex-wrap: wrap; gap: .8em; margin-top: .8em; }
.qpm-feature { margin: 0; width: 196px; font-size: .85em; }
.qpm-feature figcaption { line-height: 1.35; }
.qpm-pos { color: #a4161a; } .qpm-neg { color: #1d4e89; }
.qpm-equation { font-family: ui-monospace, monospace; font-size: .9em; margin-top: .6em; }
.qpm-table { border-collapse: collapse; font-size: .9em; }
.qpm-table td, .qpm-table th { padding: .15em .6em; border-bottom: 1px solid #ddd;
  text-align: left; }
.qpm-error { color: #a4161a; font-weight: 600; padding: .6em; border: 1px solid #a4161a;
  border-radius: 4px; }
.qpm-matrix td { width: 1.1em; height: 1.1em; padding: 0; text-align: center;
  border: 1px solid #eee; }
.qpm-matrix td.on { background: #a4161a; } .qpm-matrix td.off-neg { background: #1d4e89; }
.qpm-matrix th.qpm-feature-name { writing-mode: vertical-rl; font-weight: normal;
  font-size: .8em; }
"""


def _sign_class(value: float) -> str:
    return "qpm-neg" if value < 0 else "qpm-pos"


def _names(labels: Iterable[str]) -> str:
    labels = list(labels)
    return ", ".join(escape(n) for n in labels) if labels else "no other class"


def _weight(weight: float) -> str:
    return "1" if weight == 1.0 else f"{weight:+.3f}"


def error_html(message: str) -> str:
    """A refused upload or an unknown class, said in the page."""
    return f'<div class="qpm-error" role="alert">{escape(message)}</div>'


def model_summary_html(model: InterpretableModel) -> str:
    config = model.config
    return (
        f"<p><b>{escape(config.model_type.upper())}</b> on <code>{escape(config.backbone.name)}"
        f"</code>: {config.num_classes} classes, {config.n_features} features, "
        f"k = {config.k} per class. Every logit is exactly the sum of its features' "
        "contributions (weight × normalised activation) plus the class's bias.</p>"
    )


def prediction_set_html(s: PredictionSet, images: int | None = None) -> str:
    """The conformal prediction set: the classes that, together, hold the true one with the
    calibrated probability, with the features they share and those that set each apart."""
    members = s.explanation.members
    names = ", ".join(escape(m.label) for m in members)
    source = f", {images} calibration images" if images else ""
    fallback = " (empty at this coverage; the top class put in)" if s.filled else ""
    if s.empty:
        names = (
            "<i>empty</i>: no class is within the threshold, so at this coverage no class "
            "needs to be listed (the image is among those the target lets go)"
        )
    parts = [
        (
            f'<div class="qpm-set" data-classes="{escape(json.dumps(list(s.labels)))}" '
            f'data-coverage="{s.coverage!r}" data-threshold="{s.threshold!r}">'
            f"<p><b>{s.coverage:.0%} prediction set</b> (conformal, {escape(s.score)}{source}): "
            f"{names}{fallback}</p>"
        )
    ]
    if len(members) > 1:
        shared = ", ".join(escape(f.name) for f in s.explanation.shared) or "none"
        parts.append(f'<p class="qpm-set-shared">shared by all: {shared}</p><ul>')
        for m in members:
            own = ", ".join(escape(f.name) for f in m.distinguishing) or "none"
            parts.append(f"<li><b>{escape(m.label)}</b> apart from the others: {own}</li>")
        parts.append("</ul>")
    return "".join(parts) + "</div>"


def prediction_html(
    item: ExplainedImage,
    shown_name: str,
    calibration_images: int | None = None,
) -> str:
    """The predicted class, its top-k (and with a coverage its prediction set), and one
    heatmap panel per feature of the class."""
    pred = item.prediction
    calibrated = (
        ""
        if pred.prediction_set is None
        else prediction_set_html(pred.prediction_set, calibration_images)
    )
    expl = pred.explanation
    rows = "".join(
        f'<tr class="qpm-topk-row" data-label="{escape(s.label)}" data-probability="{s.probability!r}"'
        f' data-logit="{s.logit!r}"><td>{escape(s.label)}</td><td>{s.probability:.4f}</td>'
        f"<td>{s.logit:.4f}</td></tr>"
        for s in pred.top_k
    )
    terms = [f"{expl.bias:+.4f} (bias)"] if expl.bias else []
    terms += [f"{f.contribution:+.4f}" for f in expl.features]
    panels = "".join(
        f'<figure class="qpm-feature" data-index="{f.index}" data-name="{escape(f.name)}"'
        f' data-contribution="{f.contribution!r}" data-activation="{f.activation!r}"'
        f' data-weight="{f.weight!r}">'
        f'<img alt="where {escape(f.name)} fires" '
        f'src="{png_data_uri(overlay(item.view, item.maps[f.index], f.weight))}">'
        f"<figcaption><b>{escape(f.name)}</b><br>"
        f'<span class="{_sign_class(f.contribution)}">contribution {f.contribution:+.4f}</span>'
        f" = {_weight(f.weight)} × activation {f.activation:+.4f}<br>"
        f"also used by {_names(f.shared_with)}"
        f"{'' if item.maps[f.index].max() > 0 else '<br><i>does not fire on this image</i>'}"
        "</figcaption></figure>"
        for f in expl.features
    )
    return (
        f'<div class="qpm-prediction" data-input="{escape(shown_name)}" '
        f'data-label="{escape(pred.label)}" data-class-index="{pred.class_index}" '
        f'data-probability="{pred.probability!r}" data-logit="{pred.logit!r}">'
        f'<div class="qpm-head"><img alt="model input" src="{png_data_uri(model_input(item.view))}">'
        f'<div><h2 class="qpm-label">{escape(pred.label)}</h2>'
        f"<p>{escape(shown_name)}: p = {pred.probability:.4f}, logit {pred.logit:.4f}</p>"
        f"{calibrated}"
        f'<table class="qpm-table qpm-topk"><tr><th>class</th><th>probability</th>'
        f"<th>logit</th></tr>{rows}</table></div></div>"
        f'<div class="qpm-equation">logit {expl.logit:.4f} = {" ".join(terms)}</div>'
        f'<div class="qpm-features">{panels}</div></div>'
    )


def class_html(explanation: ClassExplanation) -> str:
    """A class's whole decision rule: its features, their weights, who shares each."""
    rows = "".join(
        f'<tr class="qpm-class-feature" data-index="{f.index}"><td>{escape(f.name)}</td>'
        f"<td>{_weight(f.weight)}</td><td>{_names(f.shared_with)}</td></tr>"
        for f in explanation.features
    )
    bias = f", bias {explanation.bias:+.4f}" if explanation.bias else ""
    return (
        f'<div class="qpm-class" data-label="{escape(explanation.label)}">'
        f"<h3>{escape(explanation.label)}</h3>"
        f"<p>{len(explanation.features)} features{bias}; its logit is the sum of their "
        "weighted activations.</p>"
        f'<table class="qpm-table"><tr><th>feature</th><th>weight</th><th>also used by</th></tr>'
        f"{rows}</table></div>"
    )


def comparison_html(comparison: ClassComparison) -> str:
    """Shared features cancel in the logit difference; the others decide between the classes."""
    a, b = escape(comparison.class_a.label), escape(comparison.class_b.label)

    def group(title: str, kind: str, features: tuple) -> str:
        items = "".join(
            f'<li data-index="{f.index}">{escape(f.name)} '
            f"(weights {_weight(f.weight_a)} / {_weight(f.weight_b)})</li>"
            for f in features
        )
        return (
            f'<div class="qpm-compare-group" data-kind="{kind}" data-count="{len(features)}">'
            f"<h4>{title} ({len(features)})</h4><ul>{items or '<li>none</li>'}</ul></div>"
        )

    return (
        f'<div class="qpm-comparison" data-class-a="{a}" data-class-b="{b}">'
        f"<h3>{a} vs {b}</h3>"
        + group("shared (cancel in the difference)", "shared", comparison.shared)
        + group(f"only {a}", "only_a", comparison.only_a)
        + group(f"only {b}", "only_b", comparison.only_b)
        + "</div>"
    )


def assignment_html(model: InterpretableModel) -> str:
    """The class × feature matrix: a filled cell is a feature the class uses (blue: negative
    weight, Q-SENN)."""
    config = model.config
    weights = model.class_weights
    head = "".join(
        f'<th class="qpm-feature-name" title="{escape(config.feature_name(j))}">'
        f"{escape(config.feature_name(j))}</th>"
        for j in range(config.n_features)
    )

    def cell(value: float) -> str:
        if value == 0:
            return "<td></td>"
        return f'<td class="{"off-neg" if value < 0 else "on"}" title="{value:+.3f}"></td>'

    body = "".join(
        f"<tr><th>{escape(label)}</th>{''.join(cell(float(v)) for v in weights[c])}</tr>"
        for c, label in enumerate(config.label_names)
    )
    return (
        f'<table class="qpm-matrix" data-classes="{config.num_classes}" '
        f'data-features="{config.n_features}"><tr><th></th>{head}</tr>{body}</table>'
    )
