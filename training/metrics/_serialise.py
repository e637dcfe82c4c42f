"""Arrays → JSON-ready lists: NaN (an undefined value) becomes None, numpy scalars Python ones."""

from __future__ import annotations

import math

import numpy as np


def json_list(array: np.ndarray) -> list:
    """A nested list of Python floats/ints/bools with NaN as None (JSON has no NaN)."""
    values = np.asarray(array).tolist()
    return _replace_nan(values)


def json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _replace_nan(values):
    if isinstance(values, list):
        return [_replace_nan(v) for v in values]
    if isinstance(values, float):
        return json_float(values)
    return values
