"""Cosine similarity between rows, the one similarity that Correlation and Structural Grounding use."""

from __future__ import annotations

import numpy as np

#: Lower bound of a row's norm: a row that is 0 everywhere has similarity 0 to every other row
#: (as in the authors' code), instead of a division by zero.
NORM_EPS = 1e-8


def cosine_similarity_rows(matrix: np.ndarray) -> np.ndarray:
    """[R, R] cosine similarity between the rows of a [R, D] matrix, clipped to [−1, 1]."""
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), NORM_EPS)
    return np.clip(unit @ unit.T, -1.0, 1.0)
