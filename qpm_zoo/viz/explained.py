"""Predictions together with what figures need: the model input as pixels and the feature maps.

One forward pass per batch gives the exact explanation (the same `Prediction` that `predict`
returns) and the selected features' maps, so a figure never shows maps from another run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..explain import InterpretableModel, Prediction
from ..preprocess import is_batch, load_image


@dataclass(frozen=True)
class ExplainedImage:
    """One image as the model saw it, its prediction, and every selected feature's map."""

    prediction: Prediction
    view: np.ndarray  #: [H, W, 3] uint8: the resized, centre-cropped model input
    logits: np.ndarray  #: [C] all classes' logits
    features: np.ndarray  #: [n] normalised activations of the selected features
    maps: np.ndarray  #: [n, h, w] the selected features' maps over `view`

    @property
    def name(self) -> str:
        return self.prediction.input


def explain_images(
    model: InterpretableModel, images: Any, top_k: int = 5, batch_size: int = 8
) -> list[ExplainedImage]:
    """Predict and explain images (a path, PIL image, array, or a list of them), keeping the maps.

    `model` is a QPM or QPMOnnx (anything implementing the InterpretableModel backend).
    """
    items: Sequence[Any] = images if is_batch(images) else [images]
    if len(items) == 0:
        raise InputError("no images given (an empty list)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    pre = model.preprocessor
    out: list[ExplainedImage] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        loaded = [
            load_image(x, start + i if is_batch(images) else None) for i, x in enumerate(chunk)
        ]
        batch = np.stack([pre.to_model_input(item) for item in loaded])
        logits, features, maps = model._forward_arrays(batch, with_maps=True)
        if maps is None or maps.ndim != 4 or maps.shape[:2] != features.shape:
            raise InputError(
                f"{type(model).__name__} gave no feature maps of shape [batch, n, h, w]; "
                "figures need a backend that returns them (QPM, or QPMOnnx with 'feature_maps')"
            )
        views = _pixels(batch, pre.mean, pre.std)
        for i, item in enumerate(loaded):
            out.append(
                ExplainedImage(
                    prediction=model._prediction(item.name, logits[i], features[i], top_k),
                    view=views[i],
                    logits=np.asarray(logits[i], dtype=np.float32),
                    features=np.asarray(features[i], dtype=np.float32),
                    maps=np.asarray(maps[i], dtype=np.float32),
                )
            )
    return out


def _pixels(batch: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Undo the normalisation of a preprocessed batch [B, 3, H, W]: uint8 [B, H, W, 3], exactly
    the crop the network saw (resize and centre crop included)."""
    rgb = np.clip(batch * std[None] + mean[None], 0.0, 1.0)
    return np.round(rgb.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
