"""The checkpoint's config.json: everything needed to rebuild a model and explain it without weights.

config.json is defined once, by the pydantic models below; `json_schema()` is its JSON Schema
(`qpm schema` prints it; docs/config.schema.json is its copy). This module is torch-free (the ONNX inference
path uses it on servers without PyTorch). Parsing is strict: an unknown or missing field, a
wrong type or an inconsistent assignment is a ConfigError naming the file, the field path and
the value (see qpm_zoo.validation), so a bad checkpoint never half-loads.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from .atomic import atomic_path, write_bytes_atomic, write_text_atomic
from .conformal import SCORES, ScoreFunction
from .errors import ConfigError, UncalibratedCoverageError
from .limits import current_limits, variable_for
from .validation import (
    Count,
    FieldProblem,
    Flag,
    Integer,
    JsonObject,
    Label,
    Number,
    StrictModel,
    Text,
    kind,
    required_in_files,
    validated,
)
from .version import __version__

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "ONNX_NAME",
    "WEIGHTS_NAME",
    "AdapterConfig",
    "Assignment",
    "BackboneConfig",
    "Calibration",
    "CoverageTarget",
    "OnnxRecord",
    "OnnxVariant",
    "PreprocessConfig",
    "Provenance",
    "QPMConfig",
    "atomic_path",  # the three atomic writers moved to qpm_zoo.atomic; importable here still
    "json_schema",
    "write_bytes_atomic",
    "write_text_atomic",
]

#: Version of the checkpoint format. Bump it when a reader of the old format would misread a
#: new checkpoint; readers refuse configs from a newer format instead of guessing.
FORMAT_VERSION = 1

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"

ModelType = Literal["qpm", "qsenn"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
CropMode = Literal["center", "squash"]
OnnxDtype = Literal["float32", "float16"]
#: The precisions an export variant may have besides the float32 main export (see OnnxVariant).
OnnxPrecision = Literal["float16", "int8"]


def _image_size(value: tuple[int, ...]) -> tuple[int, ...]:
    if len(value) != 3 or value[0] != 3 or min(value) < 1:
        raise ValueError(f"must be [3, height, width], got {list(value)}")
    largest = current_limits().max_input_side
    if max(value[1:]) > largest:
        raise ValueError(
            f"is {list(value)}, larger than {largest} px per side (the limit; raise it with "
            f"{variable_for('max_input_side')})"
        )
    return value


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"must be a number in [0, 1), got {kind(value)}")
    return float(value)


def _stem_width(value: Any) -> int:
    # timm's ResNet stems have 32 or 64 channels; 8000 would take gigabytes per image
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 512:
        raise ValueError(f"must be an integer in 1..512, got {kind(value)}")
    return value


def _stem_type(value: Any) -> str:
    if value not in ("", "deep", "deep_tiered"):
        raise ValueError(f"must be '', 'deep' or 'deep_tiered', got {kind(value)}")
    return value


def _boolean(value: Any) -> bool:
    if value is not True and value is not False:
        raise ValueError(f"must be true or false, got {kind(value)}")
    return value


def _bounded_integer(low: int, high: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer in {low}..{high}, got {kind(value)}")
        return value

    return check


def _img_size(value: Any) -> Any:
    """A transformer's input side (or [height, width]): within the input-size limit."""
    largest = current_limits().max_input_side
    sides = value if isinstance(value, list) and len(value) == 2 else [value]
    for side in sides:
        if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= largest:
            raise ValueError(
                f"must be a side (or [height, width]) in 1..{largest} px, got {kind(value)}"
            )
    return value


def _mlp_ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 16:
        raise ValueError(f"must be a number in (0, 16], got {kind(value)}")
    return float(value)


#: The `timm.create_model` keyword arguments a checkpoint may set, each with its check:
#: regularisation, ResNet stem options and the shape of vision transformers (their input and
#: patch size, width, depth, heads, register and class tokens, dynamic input sizes; the
#: parameter limit is checked on the meta device before anything is built). Anything else
#: (`checkpoint_path`, `pretrained_cfg`, `num_classes`, ...) would make timm read files or build
#: another network than config.json describes, so it is refused when the config is read, not
#: passed on.
TIMM_KWARGS = {
    "drop_rate": _rate,
    "drop_path_rate": _rate,
    "drop_block_rate": _rate,
    "stem_width": _stem_width,
    "stem_type": _stem_type,
    "avg_down": _boolean,
    "img_size": _img_size,
    "patch_size": _bounded_integer(1, 64),
    "embed_dim": _bounded_integer(1, 8192),
    "depth": _bounded_integer(1, 64),
    "num_heads": _bounded_integer(1, 128),
    "mlp_ratio": _mlp_ratio,
    "reg_tokens": _bounded_integer(0, 64),
    "class_token": _boolean,
    "dynamic_img_size": _boolean,
    "dynamic_img_pad": _boolean,
}


def timm_kwargs(value: dict[str, Any]) -> dict[str, Any]:
    """`value` if every key is in TIMM_KWARGS and passes its check (FieldProblem otherwise)."""
    unknown = sorted(set(value) - set(TIMM_KWARGS))
    if unknown:
        raise FieldProblem(
            "",
            f"must not set {unknown}: only {sorted(TIMM_KWARGS)} are passed to timm",
        )
    for key, check in TIMM_KWARGS.items():
        if key in value:
            try:
                check(value[key])
            except ValueError as e:
                raise FieldProblem(key, str(e)) from None
    return dict(value)


def inside_checkpoint(name: str) -> str:
    """`name` if it is a relative POSIX path that stays inside the checkpoint folder."""
    path = PurePosixPath(name)
    if not path.parts or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ValueError(f"must be a relative path inside the checkpoint, got {name!r}")
    return name


def _hex_digest(sha: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"must be 64 lowercase hex digits, got {sha!r}")
    return sha


ImageSize = Annotated[tuple[Integer, ...], AfterValidator(_image_size)]  #: [3, height, width]
Sha256 = Annotated[Text, AfterValidator(_hex_digest)]
CheckpointPath = Annotated[Text, AfterValidator(inside_checkpoint)]


# -- the parts -------------------------------------------------------------------------------
AdapterKind = Literal["conv1x1", "mlp"]


class AdapterConfig(StrictModel):
    """A small network on the timm model's maps, applied at every position (docs/method.md §8).

    Its output channels are the features the interpretable layer selects from. `conv1x1` is one
    1×1 convolution, batch norm and ReLU; `mlp` is `layers` of them, `hidden` channels wide but
    the last (DINO-QPM's adapter: 4 layers, 2048 hidden, 512 features).
    """

    kind: AdapterKind = Field(description="conv1x1 (one layer) or mlp (several)")
    features: Count = Field(description="its output channels: the features QPM selects from")
    hidden: Count | None = Field(None, description="mlp: channels of its hidden layers")
    layers: Count = Field(1, description="1x1 convolutions in all (conv1x1: 1; mlp: 2 or more)")

    _omitted_when_none = ("hidden",)
    _required_in_files = ("layers",)
    _stated = required_in_files(*_required_in_files)

    @model_validator(mode="after")
    def _shape(self) -> AdapterConfig:
        if self.kind == "conv1x1":
            if self.layers != 1:
                raise FieldProblem("layers", f"is {self.layers}; a conv1x1 adapter has 1 layer")
            if self.hidden is not None:
                raise FieldProblem(
                    "hidden", "must not be set: a conv1x1 adapter has no hidden layer"
                )
        else:
            if self.layers < 2:
                raise FieldProblem("layers", f"is {self.layers}; an mlp adapter has 2 or more")
            if self.hidden is None:
                raise FieldProblem("hidden", "is required for an mlp adapter")
        return self

    def widths(self, in_channels: int) -> list[tuple[int, int]]:
        """(input, output) channels of each 1×1 convolution, on maps of `in_channels`."""
        sizes = [in_channels, *[self.hidden] * (self.layers - 1), self.features]
        return list(itertools.pairwise(sizes))

    def parameter_count(self, in_channels: int) -> int:
        """Its parameters (convolution weights and biases, batch-norm scales and shifts)."""
        return sum(i * o + 3 * o for i, o in self.widths(in_channels))


class BackboneConfig(StrictModel):
    """Which timm model produces the feature maps, how it was modified, and the adapter (if
    any) that turns its maps into the features the interpretable layer selects from."""

    name: Text = Field(description="timm model name")
    num_features: Count = Field(description="channels of the timm model's feature maps")
    kwargs: Annotated[JsonObject, AfterValidator(timm_kwargs)] = Field(
        default_factory=dict,
        description="timm.create_model kwargs (only " + ", ".join(TIMM_KWARGS) + ")",
    )
    reduced_strides: Flag = Field(
        False, description="QPM's ResNet change: layer3 and layer4 keep stride 1"
    )
    adapter: AdapterConfig | None = Field(
        None, description="a 1x1-convolution adapter on the maps (absent: the maps themselves)"
    )

    _omitted_when_none = ("adapter",)
    _required_in_files = ("kwargs", "reduced_strides")
    _stated = required_in_files(*_required_in_files)

    @property
    def map_channels(self) -> int:
        """Channels of the maps the interpretable layer reads: the adapter's, else timm's."""
        return self.num_features if self.adapter is None else self.adapter.features


class PreprocessConfig(StrictModel):
    """timm-style evaluation preprocessing (the same fields as timm's pretrained_cfg)."""

    input_size: ImageSize = (3, 224, 224)
    interpolation: Interpolation = "bicubic"
    crop_mode: CropMode = "center"
    crop_pct: Number = 0.875
    mean: tuple[Number, ...] = (0.485, 0.456, 0.406)
    std: tuple[Number, ...] = (0.229, 0.224, 0.225)

    # the defaults (ImageNet's) serve code; a file that leaves one out does not say how its
    # model sees images, and 224 px for a 64 px model changes its predictions
    _required_in_files = ("input_size", "interpolation", "crop_mode", "crop_pct", "mean", "std")
    _stated = required_in_files(*_required_in_files)

    @field_validator("crop_pct")
    @classmethod
    def _crop_pct(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"must be in (0, 1], got {value}")
        return value

    @field_validator("mean")
    @classmethod
    def _mean(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 3:
            raise ValueError(f"must hold 3 numbers (one per RGB channel), got {list(value)}")
        return value

    @field_validator("std")
    @classmethod
    def _std(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 3 or min(value) <= 0:
            raise ValueError(f"must hold 3 positive numbers, got {list(value)}")
        return value


class Assignment(StrictModel):
    """Which selected features each class uses, and with which weight.

    `class_features[c]` lists positions in `QPMConfig.selected_features` (0..n-1). For QPM every
    weight is 1 and there is no bias (`class_weights` and `bias` are None); for Q-SENN they hold
    the signed quantised weights and the per-class bias.
    """

    class_features: tuple[tuple[Integer, ...], ...]
    class_weights: tuple[tuple[Number, ...], ...] | None = None
    bias: tuple[Number, ...] | None = None

    _omitted_when_none = ("class_weights", "bias")

    @classmethod
    def from_matrix(cls, weight: np.ndarray, bias: np.ndarray | None = None) -> Assignment:
        """Build from a dense [C, n] weight matrix; binary matrices without bias give a QPM assignment."""
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2:
            raise ConfigError(
                f"weight must be a [classes, features] matrix, got shape {weight.shape}"
            )
        rows = [tuple(int(i) for i in np.flatnonzero(row)) for row in weight]
        binary = bool(np.all((weight == 0) | (weight == 1)))
        if binary and bias is None:
            return cls(class_features=tuple(rows))
        weights = tuple(tuple(float(weight[c, i]) for i in row) for c, row in enumerate(rows))
        b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        return cls(class_features=tuple(rows), class_weights=weights, bias=tuple(b.tolist()))

    def weight_matrix(self, n_features: int) -> np.ndarray:
        """The dense [C, n] float32 weight matrix of the head."""
        w = np.zeros((len(self.class_features), n_features), dtype=np.float32)
        for c, row in enumerate(self.class_features):
            w[c, list(row)] = 1.0 if self.class_weights is None else self.class_weights[c]
        return w

    def bias_vector(self) -> np.ndarray | None:
        return None if self.bias is None else np.asarray(self.bias, dtype=np.float32)


class OnnxVariant(StrictModel):
    """One more export of the same model in another precision, beside the main export.

    `float16` computes the backbone in half precision (for GPU providers); `int8` is the float32
    export with its convolutions statically quantised (for CPU servers). The head stays float32
    in both, so explanations add up exactly for the variant's own outputs. `validation` holds
    its measured agreement with PyTorch float32 on real images.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    file: CheckpointPath
    sha256: Sha256
    precision: OnnxPrecision
    exporter: dict[str, Any] = Field(default_factory=dict)
    validation: dict[str, Any] = Field(default_factory=dict)


class OnnxRecord(StrictModel):
    """config.json's `onnx` entry: what the export is and what it accepts.

    `file` is the export's path inside the checkpoint; `dtype` is the precision the backbone
    computes in (inputs and outputs are always float32 in our exports); `validation` holds the
    exporter's measured differences against PyTorch (free-form, for people and model cards).
    `assignment_sha256` and `head_sha256` fingerprint the head the graph was exported with (see
    qpm_zoo.onnx_model.head_fingerprints); the graph carries the same two in its metadata, so
    an export from another checkpoint is refused even when its record is copied along.
    `variants` are further exports (float16, int8) of the same model.
    Unknown keys are kept: later exporters may record more facts about their export.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    file: CheckpointPath
    opset: Count
    sha256: Sha256
    dtype: OnnxDtype = "float32"
    input_size: ImageSize
    dynamic_batch: Flag = True
    feature_map_size: tuple[Integer, ...] | None = None
    assignment_sha256: Sha256 | None = None
    head_sha256: Sha256 | None = None
    exporter: dict[str, Any] = Field(default_factory=dict)
    validation: dict[str, Any] = Field(default_factory=dict)
    variants: dict[OnnxPrecision, OnnxVariant] = Field(default_factory=dict)

    _omitted_when_none = ("feature_map_size", "assignment_sha256", "head_sha256")

    @field_validator("feature_map_size")
    @classmethod
    def _map_size(cls, size: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"must be [height, width], got {list(size)}")
        return size

    @classmethod
    def from_config(cls, config: QPMConfig, source: str = CONFIG_NAME) -> OnnxRecord:
        """`config.onnx`, or CheckpointError when the checkpoint has no ONNX export."""
        from .errors import CheckpointError

        if config.onnx is None:
            raise CheckpointError(
                f"{source}: has no 'onnx' entry, so this checkpoint has no ONNX export; "
                "create one with: python -m export onnx MODEL_DIR"
            )
        return config.onnx


class Provenance(StrictModel):
    """Where a checkpoint's weights come from when qpm-zoo did not train them (e.g. the authors'
    release, converted): the original file, its checksum, the paper and what it reports."""

    source: Text  #: e.g. "authors-release"
    file: Text  #: the original file's name
    sha256: Sha256  #: of the original file
    paper: Text
    reported_metrics: dict[str, Number] = Field(default_factory=dict)
    note: Text | None = None  #: free text, e.g. the licence situation


def _open_probability(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


Coverage = Annotated[Number, AfterValidator(_open_probability)]
ConformalScore = Literal[SCORES]  # type: ignore[valid-type]

#: Two coverages closer than this are the same target (0.9 typed on a command line and 0.9
#: stored in config.json are one float, but a computed 1 - 0.1 need not be).
COVERAGE_TOLERANCE = 1e-9


class CoverageTarget(StrictModel):
    """One calibrated coverage: its threshold and, when measured, how its sets did on the test
    split (the model card shows these)."""

    coverage: Coverage = Field(description="the guaranteed share of sets holding the true class")
    threshold: Number = Field(description="q̂: a class is in the set when its score is <= q̂")
    test_coverage: Number | None = Field(
        None,
        description="share of the test split's sets (as predict returns them) that hold "
        "the true class",
    )
    test_mean_size: Number | None = Field(None, description="average set size on the test split")
    test_empty_share: Number | None = Field(
        None, description="share of the test split's sets that are empty"
    )
    test_worst_class: Label | None = Field(None, description="the least covered class (test)")
    test_worst_class_coverage: Number | None = Field(None, description="its coverage (test)")

    _omitted_when_none = (
        "test_coverage",
        "test_mean_size",
        "test_empty_share",
        "test_worst_class",
        "test_worst_class_coverage",
    )


class Calibration(StrictModel):
    """config.json's `calibration` entry: split-conformal thresholds for prediction sets
    (docs/method.md §9), with where they come from. Written by `python -m training calibrate`."""

    method: Literal["split_conformal"] = "split_conformal"
    score: ConformalScore = Field(description="nonconformity score: lac, aps or raps")
    images: Count = Field(description="size of the calibration set")
    split: Text = Field(description="where the calibration images come from")
    raps_lambda: Number | None = Field(None, description="RAPS penalty per rank (raps only)")
    raps_k_reg: Integer | None = Field(None, description="ranks without penalty (raps only)")
    test_images: Count | None = Field(None, description="images the test_* numbers come from")
    test_split: Text | None = Field(None, description="where those test images come from")
    targets: tuple[CoverageTarget, ...] = Field(description="one per calibrated coverage")

    _omitted_when_none = ("raps_lambda", "raps_k_reg", "test_images", "test_split")

    @model_validator(mode="after")
    def _consistent(self) -> Calibration:
        if not self.targets:
            raise FieldProblem("targets", "must hold at least one calibrated coverage")
        coverages = [t.coverage for t in self.targets]
        if len(set(coverages)) != len(coverages):
            raise FieldProblem("targets", f"repeats a coverage: {coverages}")
        raps = self.raps_lambda is not None and self.raps_k_reg is not None
        if (self.score == "raps") != raps or (self.raps_lambda is None) != (
            self.raps_k_reg is None
        ):
            raise FieldProblem(
                "raps_lambda", "and raps_k_reg are set exactly when the score is 'raps'"
            )
        return self

    @property
    def coverages(self) -> tuple[float, ...]:
        return tuple(t.coverage for t in self.targets)

    def score_function(self) -> ScoreFunction:
        if self.score == "raps":
            return ScoreFunction("raps", float(self.raps_lambda), int(self.raps_k_reg))
        return ScoreFunction(self.score)

    def target(self, coverage: float) -> CoverageTarget | None:
        for t in self.targets:
            if abs(t.coverage - coverage) <= COVERAGE_TOLERANCE:
                return t
        return None


def calibrate_command(coverages: tuple[float, ...]) -> str:
    """The command that calibrates a checkpoint for `coverages` (in error messages)."""
    shown = " ".join(f"{c:g}" for c in coverages)
    return f"python -m training calibrate MODEL_DIR --split val --coverage {shown}"


# -- the whole file --------------------------------------------------------------------------
class QPMConfig(StrictModel):
    """The content of a checkpoint's config.json (see docs/checkpoint.md)."""

    format_version: Integer = Field(
        FORMAT_VERSION, description="checkpoint format; readers refuse newer ones"
    )
    library_version: Text = Field(__version__, description="qpm-zoo version that wrote it")
    model_type: ModelType
    backbone: BackboneConfig
    num_classes: Count
    label_names: tuple[Label, ...] = Field(description="one distinct name per class")
    selected_features: tuple[Integer, ...] = Field(
        description="the n backbone channels of the interpretable layer, distinct"
    )
    k: Count = Field(description="features per class (exact for QPM, the mean for Q-SENN)")
    assignment: Assignment
    preprocessing: PreprocessConfig = Field(default_factory=PreprocessConfig)
    feature_names: tuple[Label, ...] | None = Field(None, description="one per selected feature")
    feature_descriptions: tuple[Text, ...] | None = Field(
        None, description="one per selected feature"
    )
    metrics: JsonObject = Field(default_factory=dict, description="evaluation results")
    training: JsonObject = Field(default_factory=dict, description="the training recipe")
    onnx: OnnxRecord | None = Field(None, description="the ONNX export, if there is one")
    provenance: Provenance | None = Field(
        None, description="where the weights come from, if qpm-zoo did not train them"
    )
    calibration: Calibration | None = Field(
        None, description="conformal prediction-set thresholds, if calibrated"
    )

    _omitted_when_none = ("onnx", "provenance", "calibration")
    _required_in_files = ("preprocessing",)
    _stated = required_in_files(*_required_in_files)

    # -- derived -------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Number of selected features n (the width of the interpretable layer)."""
        return len(self.selected_features)

    def weight_matrix(self) -> np.ndarray:
        return self.assignment.weight_matrix(self.n_features)

    def bias_vector(self) -> np.ndarray | None:
        return self.assignment.bias_vector()

    def feature_name(self, i: int) -> str:
        if self.feature_names is not None:
            return self.feature_names[i]
        return f"feature {i}"

    def coverage_target(self, coverage: float) -> CoverageTarget:
        """The calibrated threshold for `coverage`, or UncalibratedCoverageError saying which
        coverages are calibrated and how to calibrate this one."""
        from .conformal import check_coverage

        coverage = check_coverage(coverage)
        target = None if self.calibration is None else self.calibration.target(coverage)
        if target is not None:
            return target
        have = (
            "the model is not calibrated"
            if self.calibration is None
            else "it is calibrated for "
            + ", ".join(f"{c:g}" for c in self.calibration.coverages)
            + " only"
        )
        known = () if self.calibration is None else self.calibration.coverages
        wanted = tuple(sorted({*known, coverage}))
        raise UncalibratedCoverageError(
            f"no prediction sets for coverage {coverage:g}: {have}; calibrate it on held-out "
            f"labelled images: {calibrate_command(wanted)}"
        )

    def replace(self, **changes: Any) -> QPMConfig:
        """A copy with some fields changed (validated again)."""
        return validated(type(self), {**dict(self), **changes}, "QPMConfig")

    # -- checks --------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _readable_format(cls, data: Any) -> Any:
        """Refuse a newer format before reading any field: its fields may mean other things."""
        if not isinstance(data, Mapping):
            return data
        version = data.get("format_version", FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool):
            if version > FORMAT_VERSION:
                raise FieldProblem(
                    "",
                    f"written in checkpoint format {version} (by qpm-zoo "
                    f"{data.get('library_version', '?')}); this qpm-zoo {__version__} reads format "
                    f"{FORMAT_VERSION} and older. Upgrade: pip install -U qpm-zoo",
                )
            if version < 1:
                raise FieldProblem("format_version", f"must be 1 or newer, got {version}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> QPMConfig:
        n, C = self.n_features, self.num_classes
        if n == 0:
            raise FieldProblem("selected_features", "must not be empty")
        if len(set(self.selected_features)) != n:
            raise FieldProblem("selected_features", "must not repeat a feature")
        channels = self.backbone.map_channels
        outside = [i for i in self.selected_features if not 0 <= i < channels]
        if outside:
            raise FieldProblem(
                "selected_features",
                f"holds {outside[:5]}, outside the backbone's {channels} features",
            )
        if len(self.label_names) != C:
            raise FieldProblem(
                "label_names", f"has {len(self.label_names)} names for num_classes={C}"
            )
        if len(set(self.label_names)) != C:
            raise FieldProblem(
                "label_names", "must not repeat a name (classes are looked up by name)"
            )
        for name in ("feature_names", "feature_descriptions"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise FieldProblem(name, f"has {len(value)} entries for {n} selected features")
        if self.k > n:
            raise FieldProblem("k", f"is {self.k}, more than the {n} selected features")
        self._check_assignment()
        return self

    def _check_assignment(self) -> None:
        a, n, C = self.assignment, self.n_features, self.num_classes
        if len(a.class_features) != C:
            raise FieldProblem(
                "assignment.class_features", f"has {len(a.class_features)} rows for {C} classes"
            )
        for c, row in enumerate(a.class_features):
            where = f"assignment.class_features[{c}]"
            if len(set(row)) != len(row):
                raise FieldProblem(where, f"repeats a feature: {list(row)}")
            if any(not 0 <= i < n for i in row):
                raise FieldProblem(where, f"holds an index outside 0..{n - 1}: {list(row)}")
            if self.model_type == "qpm" and len(row) != self.k:
                raise FieldProblem(
                    where, f"has {len(row)} features; every QPM class uses exactly k={self.k}"
                )
        if self.model_type == "qpm":
            if a.class_weights is not None or a.bias is not None:
                raise FieldProblem(
                    "assignment", "of a QPM is binary: it has no class_weights and no bias"
                )
            return
        if a.class_weights is None or a.bias is None:
            raise FieldProblem("assignment", "of a Q-SENN needs class_weights and bias")
        if len(a.class_weights) != C:
            raise FieldProblem(
                "assignment.class_weights", f"has {len(a.class_weights)} rows for {C} classes"
            )
        for c, (row, weights) in enumerate(zip(a.class_features, a.class_weights)):
            if len(row) != len(weights):
                raise FieldProblem(
                    f"assignment.class_weights[{c}]",
                    f"has {len(weights)} weights for {len(row)} features",
                )
        if len(a.bias) != C:
            raise FieldProblem("assignment.bias", f"has {len(a.bias)} values for {C} classes")

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write config.json atomically (a crash never leaves a half-written file)."""
        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, data: Any, source: str = CONFIG_NAME) -> QPMConfig:
        """Parse config.json's content; every problem is a ConfigError naming `source`."""
        if isinstance(data, Mapping) and "format_version" not in data:
            raise ConfigError(
                f"{source}: format_version: required field is missing (every config.json "
                "states its format)"
            )
        return validated(cls, data, source, from_file=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> QPMConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot be read ({e})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
            ) from None
        return cls.from_dict(data, source=str(path))


def json_schema() -> dict:
    """config.json's JSON Schema (draft 2020-12), generated from the models above."""
    schema = QPMConfig.model_json_schema(mode="validation")
    # a file must state its format (from_dict checks it); the constructor fills in ours
    schema["required"].insert(0, "format_version")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "qpm-zoo checkpoint config.json"
    return schema
