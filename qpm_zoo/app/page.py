"""The explorer page: Gradio components wired to one model's predictions and explanations.

Gradio is imported only here and only when a page is built (`pip install 'qpm-zoo[app]'`).
The handlers never raise on bad input: a refused upload or an unknown class is an `InputError`
turned into a message in the page.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError
from ..explain import InterpretableModel
from .uploads import MAX_UPLOAD_BYTES, check_upload
from .views import (
    CSS,
    assignment_html,
    class_html,
    comparison_html,
    error_html,
    model_summary_html,
    prediction_html,
)

#: Classes listed with a prediction.
DEFAULT_TOP_K = 5

#: `coverage=CALIBRATED`: the sets of the checkpoint's first calibrated coverage, or none when
#: it is not calibrated (what `qpm app` and a published Space show by default).
CALIBRATED = "calibrated"


def resolve_coverage(model: InterpretableModel, coverage: float | str | None) -> float | None:
    """The coverage the page's sets have (None: no sets); an uncalibrated one fails here, with
    the command that calibrates it, not at the first upload."""
    if coverage == CALIBRATED:
        calibration = model.config.calibration
        return None if calibration is None else calibration.coverages[0]
    if coverage is not None:
        model.config.coverage_target(coverage)
    return coverage


def require_gradio() -> Any:
    """The gradio module, or MissingDependencyError naming the `[app]` extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read at import: no calls home
    try:
        import gradio
    except ImportError:
        raise MissingDependencyError(
            "gradio", "app", "the explanation explorer (qpm app)"
        ) from None
    return gradio


@dataclass(frozen=True)
class PredictionPanels:
    """What one upload updates: the prediction, and the class and comparison tabs set to the
    predicted class (and, for the comparison, its runner-up)."""

    prediction: str
    class_name: str | None = None
    class_view: str = ""
    compare_a: str | None = None
    compare_b: str | None = None
    comparison_view: str = ""
    top_classes: tuple[str, ...] = ()  #: the top-k labels, offered to open their explanation


class Explorer:
    """The page's handlers for one model (torch `QPM` or `QPMOnnx`): plain functions of their
    inputs that return HTML, so they are tested without a browser."""

    def __init__(
        self,
        model: InterpretableModel,
        top_k: int = DEFAULT_TOP_K,
        coverage: float | str | None = CALIBRATED,
    ):
        self.model = model
        self.top_k = top_k
        self.coverage = resolve_coverage(model, coverage)  #: the sets' (None: no sets)

    def predict(self, path: str | None) -> PredictionPanels:
        if not path:
            return PredictionPanels("")
        shown = os.path.basename(path)
        try:
            check_upload(path, shown)
            item = self.model.predict_with_maps(path, top_k=self.top_k, coverage=self.coverage)[0]
        except InputError as e:  # named as the user knows the file, not by the server's path
            return PredictionPanels(error_html(str(e).replace(path, shown)))
        labels = [s.label for s in item.prediction.top_k]
        runner_up = labels[1] if len(labels) > 1 else labels[0]
        return PredictionPanels(
            prediction=prediction_html(item, shown, self._calibrated_images()),
            class_name=item.prediction.label,
            class_view=self.explain(item.prediction.label),
            compare_a=item.prediction.label,
            compare_b=runner_up,
            comparison_view=self.compare(item.prediction.label, runner_up),
            top_classes=tuple(labels),
        )

    def _calibrated_images(self) -> int | None:
        calibration = self.model.config.calibration
        return None if calibration is None else calibration.images

    def explain(self, class_name: str | None) -> str:
        if not class_name:
            return ""
        try:
            return class_html(self.model.explain_class(class_name))
        except InputError as e:
            return error_html(str(e))

    def compare(self, class_a: str | None, class_b: str | None) -> str:
        if not class_a or not class_b:
            return ""
        try:
            return comparison_html(self.model.compare(class_a, class_b))
        except InputError as e:
            return error_html(str(e))


def build_page(
    model: InterpretableModel,
    *,
    examples: Sequence[str | os.PathLike] = (),
    title: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    coverage: float | str | None = CALIBRATED,
) -> Any:
    """The explorer as a `gradio.Blocks` (not launched; `serve` launches it); with a
    `coverage` (by default the checkpoint's first calibrated one), each prediction shows its
    conformal prediction set."""
    gr = require_gradio()
    explorer = Explorer(model, top_k, coverage)
    labels = list(model.label_names)
    title = title or f"qpm-zoo explorer: {model.config.model_type.upper()}"
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}")
        gr.HTML(model_summary_html(model))
        with gr.Tabs() as tabs:
            with gr.Tab("Predict", id="predict"), gr.Row():
                with gr.Column(scale=1, min_width=240):
                    upload = gr.File(label="image", type="filepath", elem_id="qpm-upload")
                    if examples:
                        gr.Examples([[os.fspath(p)] for p in examples], [upload], label="examples")
                with gr.Column(scale=3):
                    prediction = gr.HTML(elem_id="qpm-prediction")
                    top_classes = gr.Radio(
                        [],
                        label="open a class's explanation",
                        elem_id="qpm-top-classes",
                        visible=False,
                    )
            with gr.Tab("Class", id="class", elem_id="qpm-class-tab"):
                class_name = gr.Dropdown(labels, label="class", elem_id="qpm-class-choice")
                class_view = gr.HTML(elem_id="qpm-class")
            with gr.Tab("Compare", id="compare", elem_id="qpm-compare-tab"):
                with gr.Row():
                    compare_a = gr.Dropdown(labels, label="class A", elem_id="qpm-compare-a")
                    compare_b = gr.Dropdown(labels, label="class B", elem_id="qpm-compare-b")
                comparison_view = gr.HTML(elem_id="qpm-comparison")
            with gr.Tab("Assignment", id="assignment"):
                gr.HTML(assignment_html(model), elem_id="qpm-assignment")

        outputs = [
            prediction,
            top_classes,
            class_name,
            class_view,
            compare_a,
            compare_b,
            comparison_view,
        ]

        def on_upload(path: str | None) -> tuple:
            panels = explorer.predict(path)
            return (
                panels.prediction,
                gr.update(
                    choices=list(panels.top_classes), value=None, visible=bool(panels.top_classes)
                ),
                gr.update(value=panels.class_name) if panels.class_name else gr.update(),
                panels.class_view or gr.update(),
                gr.update(value=panels.compare_a) if panels.compare_a else gr.update(),
                gr.update(value=panels.compare_b) if panels.compare_b else gr.update(),
                panels.comparison_view or gr.update(),
            )

        # change: an upload, a picked example, or clearing the file (which clears the panel)
        upload.change(on_upload, [upload], outputs, show_progress="minimal")
        class_name.input(explorer.explain, [class_name], [class_view])

        def open_class(label: str | None) -> tuple:
            return gr.update(value=label), explorer.explain(label), gr.Tabs(selected="class")

        top_classes.input(open_class, [top_classes], [class_name, class_view, tabs])
        compare_a.input(explorer.compare, [compare_a, compare_b], [comparison_view])
        compare_b.input(explorer.compare, [compare_a, compare_b], [comparison_view])
    return page


def _warm_up(model: InterpretableModel) -> None:
    """One prediction before the first visitor: a backend's first forward pass allocates and
    plans (torch, onnxruntime), which would otherwise add to the first upload's wait."""
    _, height, width = model.config.preprocessing.input_size
    model.predict_with_maps(np.zeros((height, width, 3), np.uint8))


def serve(
    model: InterpretableModel,
    *,
    host: str | None = "127.0.0.1",
    port: int | None = None,
    examples: Sequence[str | os.PathLike] = (),
    title: str | None = None,
    coverage: float | str | None = CALIBRATED,
    block: bool = True,
) -> Any:
    """Build the page and serve it on `host:port` (None: Gradio's GRADIO_SERVER_NAME/PORT, as a
    Hugging Face Space sets them). With `block=False` it returns the running page; its
    `local_url` is the address and `close()` stops it."""
    page = build_page(model, examples=examples, title=title, coverage=coverage)
    _warm_up(model)
    folders = sorted({os.path.dirname(os.path.abspath(p)) for p in examples})
    page.launch(
        server_name=host,
        server_port=port,
        css=CSS,
        ssr_mode=False,
        prevent_thread_lock=not block,
        max_file_size=MAX_UPLOAD_BYTES,
        allowed_paths=folders,
        footer_links=[],
        quiet=not block,
    )
    return page
