"""The errors the training side raises on purpose: QPMErrors (so `python -m training` reports them
in one line, exit status 2) that keep a stdlib base for callers catching ValueError/RuntimeError."""

from __future__ import annotations

from qpm_zoo.errors import QPMError


class FitConfigError(QPMError, ValueError):
    """The training config cannot be used (a field is unknown, mistyped or out of range)."""


class DataConfigError(QPMError, ValueError):
    """The data section of a config, or the dataset files it points to, cannot be used."""


class PretrainedWeightsError(QPMError, RuntimeError):
    """Pretrained weights were asked for but cannot be had (offline, or a mapping mismatch)."""


class TrainingDiverged(QPMError, FloatingPointError):
    """The loss of a training phase became NaN or infinite (the message says which epoch)."""


class FeatureSelectionError(QPMError, RuntimeError):
    """Q-SENN's feature selection found fewer features carrying signal than it must select."""


class DeviceError(QPMError, RuntimeError):
    """The configured device or precision cannot be had on this machine (e.g. `cuda` without a GPU)."""


class DistributedError(QPMError, RuntimeError):
    """The torchrun environment is inconsistent, or another rank failed (its message is kept)."""
