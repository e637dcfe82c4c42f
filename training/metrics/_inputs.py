"""Input checking shared by every metric: one place that turns tensors/arrays into checked numpy.

Metrics run at the end of long pipelines; a wrong shape or a NaN must fail at once with a
ValueError that names the argument, not produce a plausible-looking number.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """A numpy view/copy of a numpy array, a torch tensor (any device, any float type) or a list."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.float()  # bfloat16 has no numpy counterpart; float32 is exact for both
        return value.numpy()  # zero-copy for CPU float32/float64
    return np.asarray(value)


def float_array(value: Any, name: str, ndim: int) -> np.ndarray:
    """A finite float64 array with exactly `ndim` dimensions and no empty axis."""
    array = to_numpy(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(array.shape)}")
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty, got shape {tuple(array.shape)}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def int_array(value: Any, name: str, low: int, high: int | None) -> np.ndarray:
    """A 1-D int64 array whose values are whole numbers in [low, high) (high=None: no upper bound)."""
    array = to_numpy(value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not (
        np.isfinite(array).all() and (array == np.round(array)).all()
    ):
        raise ValueError(f"{name} must hold whole numbers, got non-integer or NaN values")
    array = array.astype(np.int64)
    if array.min() < low or (high is not None and array.max() >= high):
        bound = f"{low}..{high - 1}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got values {array.min()}..{array.max()}")
    return array


def binary_array(value: Any, name: str, ndim: int) -> np.ndarray:
    """A bool array from 0/1 or bool input; anything else is an error (not silently thresholded)."""
    array = float_array(value, name, ndim)
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be binary (0/1 or bool)")
    return array.astype(bool)


def predictions(logits_or_pred: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    """Predicted class indices [N] from logits [N, C] (argmax) or from indices [N]."""
    array = to_numpy(logits_or_pred)
    if array.ndim == 2:
        logits = float_array(array, name, 2)
        if num_classes is not None and logits.shape[1] != num_classes:
            raise ValueError(f"{name} has {logits.shape[1]} classes, expected {num_classes}")
        return logits.argmax(axis=1)
    if array.ndim == 1:
        return int_array(array, name, 0, num_classes)
    raise ValueError(
        f"{name} must be logits [N, C] or class indices [N], got shape {tuple(array.shape)}"
    )


def map_batch(value: Any, num_features: int, source: str) -> np.ndarray:
    """A batch of feature maps [B, num_features, h, w] as numpy, not yet converted to float64
    (a dense model's batch is large; callers convert and NaN-check only the maps they read).
    `source` names the argument that fixed num_features, for the error message."""
    maps = to_numpy(value)
    if maps.ndim != 4 or 0 in maps.shape:
        raise ValueError(f"feature_maps must be [B, n, h, w], got shape {tuple(maps.shape)}")
    if maps.shape[1] != num_features:
        raise ValueError(
            f"feature_maps has {maps.shape[1]} maps per image but {source} has {num_features} features"
        )
    return maps


def same_length(first: tuple[str, int], second: tuple[str, int]) -> None:
    """Raise if two inputs that describe the same images have different lengths."""
    (name_a, len_a), (name_b, len_b) = first, second
    if len_a != len_b:
        raise ValueError(f"{name_a} has {len_a} rows but {name_b} has {len_b}; they must match")


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
