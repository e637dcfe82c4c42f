"""Figures of explanations: a prediction's features where they fire, two classes side by side,
a prediction set's shared and distinguishing features, and the whole class-feature assignment.

Torch-free (numpy, Pillow, matplotlib; scipy for the assignment's clustering), so they work
from an ONNX checkpoint too. Matplotlib is imported only when a figure is made: install it
with `pip install 'qpm-zoo[viz]'`. Every figure function returns a matplotlib Figure; write it
with `save_figure(fig, "out.png")`.
"""

from __future__ import annotations

from ..explain import ExplainedImage
from ..preprocess import IMAGE_EXTENSIONS
from .assignment import AssignmentOrder, assignment_figure, assignment_order
from .comparison import class_pair, comparison_figure
from .examples import find_images, pick_class_examples
from .explanation import explanation_figure
from .gallery import most_similar_pair, write_figures
from .heatmap import feature_heatmap
from .prediction_set import prediction_set_figure
from .render import check_figure_path, save_figure

__all__ = [
    "IMAGE_EXTENSIONS",
    "AssignmentOrder",
    "ExplainedImage",
    "assignment_figure",
    "assignment_order",
    "check_figure_path",
    "class_pair",
    "comparison_figure",
    "explanation_figure",
    "feature_heatmap",
    "find_images",
    "most_similar_pair",
    "pick_class_examples",
    "prediction_set_figure",
    "save_figure",
    "write_figures",
]
