"""Memory bounds checked before anything large is allocated (torch-free).

A small file can describe a huge thing: a 474-byte PNG of 1×100000 pixels, a config.json whose
input size is 100000 px or whose backbone has a stem of 8000 channels. Each is checked against a
limit before it is decoded or built, so a hostile input is a one-line error instead of an
exhausted machine. The limits are generous defaults; set the environment variables below to
change them (e.g. for gigapixel slides).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .errors import UsageError

__all__ = ["ENVIRONMENT", "Limits", "current_limits", "variable_for"]


@dataclass(frozen=True)
class Limits:
    """The bounds in force (see `current_limits`)."""

    #: pixels of an image file or array before it is decoded or converted (Pillow's own
    #: decompression-bomb warning starts at 89.5 M; ours refuses instead of warning)
    max_image_pixels: int = 100_000_000
    #: height or width of the model input (config.json's preprocessing.input_size)
    max_input_side: int = 4096
    #: parameters of a backbone, counted on the meta device before it is built (1e9 float32
    #: parameters are 4 GB)
    max_backbone_parameters: int = 1_000_000_000


#: environment variable → Limits field
ENVIRONMENT = {
    "QPM_MAX_IMAGE_PIXELS": "max_image_pixels",
    "QPM_MAX_INPUT_SIDE": "max_input_side",
    "QPM_MAX_BACKBONE_PARAMETERS": "max_backbone_parameters",
}


def current_limits() -> Limits:
    """The defaults, with each one the environment sets replaced (read on every call, so a
    change takes effect at once); a value that is not a positive integer is a UsageError."""
    values = {f.name: f.default for f in fields(Limits)}
    for variable, name in ENVIRONMENT.items():
        text = os.environ.get(variable)
        if text is None or not text.strip():
            continue
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = 0
        if value < 1:
            raise UsageError(
                f"environment variable {variable}: must be a positive integer, got {text!r}"
            )
        values[name] = value
    return Limits(**values)


def variable_for(name: str) -> str:
    """The environment variable that sets the Limits field `name` (for error messages)."""
    return next(v for v, field in ENVIRONMENT.items() if field == name)
