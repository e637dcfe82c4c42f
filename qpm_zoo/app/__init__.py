"""The explanation explorer: a local web page (Gradio) to upload an image and see the prediction,
its top-k and the k features with their heatmaps and exact contributions; every class's global
explanation, two classes compared, the class × feature assignment, and with a calibration
(`--calibration DIR`, or the checkpoint's own) each prediction's conformal prediction set.

    qpm app MODEL [--onnx] [--port P]          (pip install 'qpm-zoo[app]')

Works with the PyTorch model and with the ONNX export; with `--onnx` the server never imports
torch. The same page runs as a Hugging Face Space (`python -m training publish --space`).
"""

from __future__ import annotations

from ..calibration import calibrate_model
from .loading import load_model
from .page import Explorer, PredictionPanels, build_page, serve

__all__ = [
    "Explorer",
    "PredictionPanels",
    "build_page",
    "calibrate_model",
    "load_model",
    "serve",
]
