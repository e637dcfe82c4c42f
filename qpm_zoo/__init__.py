"""qpm-zoo: globally interpretable image classifiers (QPM, Q-SENN).

`QPM` (PyTorch) and `QPMOnnx` (onnxruntime, no torch) load a checkpoint from a folder or the
Hugging Face Hub and return predictions with their exact k-feature explanations. Importing this
package does not import torch: the heavy backends load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import (
    Assignment,
    BackboneConfig,
    OnnxRecord,
    PreprocessConfig,
    Provenance,
    QPMConfig,
)
from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    MissingDependencyError,
    ModelCardError,
    NonFiniteOutputError,
    QPMError,
    UsageError,
)
from .explain import (
    ClassComparison,
    ClassExplanation,
    ClassFeature,
    ClassScore,
    ComparedFeature,
    Explanation,
    FeatureContribution,
    GlobalExplainer,
    Prediction,
)
from .version import __version__

if TYPE_CHECKING:
    from .model import QPM
    from .onnx_model import QPMOnnx

__all__ = [
    "QPM",
    "Assignment",
    "BackboneConfig",
    "CheckpointError",
    "ClassComparison",
    "ClassExplanation",
    "ClassFeature",
    "ClassScore",
    "ComparedFeature",
    "ConfigError",
    "Explanation",
    "FeatureContribution",
    "GlobalExplainer",
    "InputError",
    "MissingDependencyError",
    "ModelCardError",
    "NonFiniteOutputError",
    "OnnxRecord",
    "Prediction",
    "PreprocessConfig",
    "Provenance",
    "QPMConfig",
    "QPMError",
    "QPMOnnx",
    "UsageError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "QPM":
        try:
            import timm  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise MissingDependencyError(
                e.name or "torch", "torch", "qpm_zoo.QPM (use qpm_zoo.QPMOnnx without PyTorch)"
            ) from None
        from .model import QPM

        return QPM
    if name == "QPMOnnx":
        from .onnx_model import QPMOnnx

        return QPMOnnx
    raise AttributeError(f"module 'qpm_zoo' has no attribute {name!r}")
