"""Exceptions raised by qpm-zoo: every one names the file, field or input it is about."""

from __future__ import annotations


class QPMError(Exception):
    """Base class of the errors qpm-zoo raises on purpose."""


class CheckpointError(QPMError, ValueError):
    """A checkpoint (folder, Hub repository or file in it) is missing, malformed or inconsistent."""


class ConfigError(CheckpointError):
    """config.json does not describe a model this version of qpm-zoo can build."""


class InputError(QPMError, ValueError):
    """An image or a class name given to predict/explain/compare cannot be used."""


class NonFiniteOutputError(QPMError, ArithmeticError):
    """A model computed NaN or infinite logits or features: no prediction is made from them."""


class UncalibratedCoverageError(QPMError, ValueError):
    """Prediction sets were asked for a coverage the checkpoint has no calibrated threshold for."""


class UsageError(QPMError, ValueError):
    """A command's arguments cannot be used as given (a bad value, or options that conflict)."""


class ModelCardError(QPMError, ValueError):
    """The model-card template is missing or names a field the card does not have."""


class MissingDependencyError(QPMError, ImportError):
    """An optional dependency (torch, onnxruntime, matplotlib) is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs {package}, which is not installed: pip install 'qpm-zoo[{extra}]'"
        )
        self.package = package
        self.extra = extra
