"""The exporters' own error: a model that cannot be turned into a valid ONNX graph."""

from __future__ import annotations

from qpm_zoo.errors import QPMError


class ExportError(QPMError, RuntimeError):
    """The model could not be turned into a valid one-file ONNX graph, or the graph disagrees
    with the model it came from."""
