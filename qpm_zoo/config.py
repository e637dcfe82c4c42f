"""The checkpoint's config.json: everything needed to rebuild a model and explain it without weights.

This module is torch-free (the ONNX inference path uses it on servers without PyTorch).
Parsing is strict: an unknown or missing field, a wrong type or an inconsistent assignment is a
ConfigError naming the file and the field, so a bad checkpoint never half-loads.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._fields import FieldReader, kind
from .errors import ConfigError
from .version import __version__

#: Version of the checkpoint format. Bump it when a reader of the old format would misread a
#: new checkpoint; readers refuse configs from a newer format instead of guessing.
FORMAT_VERSION = 1

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"

MODEL_TYPES = ("qpm", "qsenn")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
CROP_MODES = ("center", "squash")


@dataclass(frozen=True)
class BackboneConfig:
    """Which timm model produces the feature maps, and how it was modified."""

    name: str
    num_features: int
    kwargs: dict = field(default_factory=dict)
    reduced_strides: bool = False

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "num_features": self.num_features,
            "kwargs": dict(self.kwargs),
            "reduced_strides": self.reduced_strides,
        }

    @classmethod
    def _parse(cls, f: FieldReader) -> BackboneConfig:
        out = cls(
            name=f.str("name"),
            num_features=f.int("num_features", minimum=1),
            kwargs=f.dict("kwargs", {}),
            reduced_strides=f.bool("reduced_strides", False),
        )
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class PreprocessConfig:
    """timm-style evaluation preprocessing (the same fields as timm's pretrained_cfg)."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bicubic"
    crop_mode: str = "center"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_mode": self.crop_mode,
            "crop_pct": self.crop_pct,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def _parse(cls, f: FieldReader) -> PreprocessConfig:
        size = f.int_list("input_size")
        if len(size) != 3 or size[0] != 3 or min(size) < 1:
            raise f.error("input_size", f"must be [3, height, width], got {size}")
        crop_pct = f.float("crop_pct", 1.0)
        if not 0.0 < crop_pct <= 1.0:
            raise f.error("crop_pct", f"must be in (0, 1], got {crop_pct}")
        mean, std = f.float_list("mean"), f.float_list("std")
        if len(mean) != 3:
            raise f.error("mean", f"must hold 3 numbers (one per RGB channel), got {len(mean)}")
        if len(std) != 3 or min(std) <= 0:
            raise f.error("std", f"must hold 3 positive numbers, got {std}")
        out = cls(
            input_size=tuple(size),
            interpolation=f.str("interpolation", "bicubic", INTERPOLATIONS),
            crop_mode=f.str("crop_mode", "center", CROP_MODES),
            crop_pct=crop_pct,
            mean=tuple(mean),
            std=tuple(std),
        )
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class Assignment:
    """Which selected features each class uses, and with which weight.

    `class_features[c]` lists positions in `QPMConfig.selected_features` (0..n-1). For QPM every
    weight is 1 and there is no bias (`class_weights` and `bias` are None); for Q-SENN they hold
    the signed quantised weights and the per-class bias.
    """

    class_features: tuple[tuple[int, ...], ...]
    class_weights: tuple[tuple[float, ...], ...] | None = None
    bias: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "class_features", tuple(tuple(int(i) for i in row) for row in self.class_features)
        )
        if self.class_weights is not None:
            object.__setattr__(
                self,
                "class_weights",
                tuple(tuple(float(w) for w in row) for row in self.class_weights),
            )
        if self.bias is not None:
            object.__setattr__(self, "bias", tuple(float(b) for b in self.bias))

    @classmethod
    def from_matrix(cls, weight: np.ndarray, bias: np.ndarray | None = None) -> Assignment:
        """Build from a dense [C, n] weight matrix; binary matrices without bias give a QPM assignment."""
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2:
            raise ValueError(
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

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"class_features": [list(r) for r in self.class_features]}
        if self.class_weights is not None:
            out["class_weights"] = [list(r) for r in self.class_weights]
        if self.bias is not None:
            out["bias"] = list(self.bias)
        return out


@dataclass(frozen=True)
class Provenance:
    """Where the weights come from when they were not trained by qpm-zoo (e.g. an authors'
    release converted by `python -m training import-authors`)."""

    source: str  #: where the file was published (a URL)
    file: str  #: the file's name
    sha256: str  #: of the file, as converted
    paper: str  #: the paper the weights belong to
    reported_metrics: dict[str, float] = field(default_factory=dict)  #: as the authors report
    note: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "source": self.source,
            "file": self.file,
            "sha256": self.sha256,
            "paper": self.paper,
            "reported_metrics": dict(self.reported_metrics),
        }
        if self.note is not None:
            out["note"] = self.note
        return out

    @classmethod
    def _parse(cls, f: FieldReader) -> Provenance:
        reported = f.dict("reported_metrics", {})
        for key, value in reported.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise f.error(f"reported_metrics.{key}", f"must be a number, got {kind(value)}")
        out = cls(
            source=f.str("source"),
            file=f.str("file"),
            sha256=f.str("sha256"),
            paper=f.str("paper"),
            reported_metrics={key: float(value) for key, value in reported.items()},
            note=f.str("note", None),
        )
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class QPMConfig:
    """The content of a checkpoint's config.json (see architecture.md, "The checkpoint")."""

    model_type: str
    backbone: BackboneConfig
    num_classes: int
    selected_features: tuple[int, ...]
    k: int
    assignment: Assignment
    label_names: tuple[str, ...]
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)
    feature_names: tuple[str, ...] | None = None
    feature_descriptions: tuple[str, ...] | None = None
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    onnx: dict | None = None
    provenance: Provenance | None = None
    library_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "selected_features", tuple(int(i) for i in self.selected_features))
        object.__setattr__(self, "label_names", tuple(self.label_names))
        for name in ("feature_names", "feature_descriptions"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        self._validate("QPMConfig")

    # -- derived -------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Number of selected features n (the width of the interpretable layer)."""
        return len(self.selected_features)

    @property
    def has_bias(self) -> bool:
        return self.assignment.bias is not None

    def weight_matrix(self) -> np.ndarray:
        return self.assignment.weight_matrix(self.n_features)

    def bias_vector(self) -> np.ndarray | None:
        return self.assignment.bias_vector()

    def feature_name(self, i: int) -> str:
        if self.feature_names is not None:
            return self.feature_names[i]
        return f"feature {i}"

    def replace(self, **changes: Any) -> QPMConfig:
        """A copy with some fields changed (validated again)."""
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data.update(changes)
        return QPMConfig(**data)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "library_version": self.library_version,
            "model_type": self.model_type,
            "backbone": self.backbone.to_dict(),
            "num_classes": self.num_classes,
            "label_names": list(self.label_names),
            "selected_features": list(self.selected_features),
            "k": self.k,
            "assignment": self.assignment.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            "feature_descriptions": (
                None if self.feature_descriptions is None else list(self.feature_descriptions)
            ),
            "metrics": self.metrics,
            "training": self.training,
        }
        if self.onnx is not None:
            out["onnx"] = self.onnx
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write config.json atomically (a crash never leaves a half-written file)."""
        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, data: Any, source: str = CONFIG_NAME) -> QPMConfig:
        f = FieldReader(data, source)
        version = f.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise f.error("format_version", f"must be an integer, got {kind(version)}")
        if version > FORMAT_VERSION:
            raise ConfigError(
                f"{source}: written in checkpoint format {version} (by qpm-zoo "
                f"{f.data.get('library_version', '?')}); this qpm-zoo {__version__} reads format "
                f"{FORMAT_VERSION} and older. Upgrade: pip install -U qpm-zoo"
            )
        if version < 1:
            raise f.error("format_version", f"must be 1 or newer, got {version}")
        model_type = f.str("model_type", choices=MODEL_TYPES)
        backbone = BackboneConfig._parse(f.sub("backbone"))
        num_classes = f.int("num_classes", minimum=1)
        selected = f.int_list("selected_features")
        k = f.int("k", minimum=1)
        a = f.sub("assignment")
        assignment = Assignment(
            class_features=[
                _int_row(a, "class_features", i, r) for i, r in enumerate(a.list("class_features"))
            ],
            class_weights=(
                None
                if a.get("class_weights", None) is None
                else [
                    _float_row(a, "class_weights", i, r)
                    for i, r in enumerate(a.list("class_weights"))
                ]
            ),
            bias=None if a.get("bias", None) is None else a.float_list("bias"),
        )
        a.reject_unknown()
        label_names = f.str_list("label_names")
        prep_data = f.get("preprocessing", None)
        preprocessing = (
            PreprocessConfig()
            if prep_data is None
            else PreprocessConfig._parse(f.sub("preprocessing"))
        )
        onnx = f.get("onnx", None)
        if onnx is not None and not isinstance(onnx, Mapping):
            raise f.error("onnx", f"must be a JSON object or null, got {kind(onnx)}")
        config = cls.__new__(cls)
        values = {
            "model_type": model_type,
            "backbone": backbone,
            "num_classes": num_classes,
            "selected_features": tuple(selected),
            "k": k,
            "assignment": assignment,
            "label_names": tuple(label_names),
            "preprocessing": preprocessing,
            "feature_names": _opt_tuple(f.str_list("feature_names", None)),
            "feature_descriptions": _opt_tuple(f.str_list("feature_descriptions", None)),
            "metrics": f.dict("metrics", {}),
            "training": f.dict("training", {}),
            "onnx": None if onnx is None else dict(onnx),
            "provenance": (
                None
                if f.get("provenance", None) is None
                else Provenance._parse(f.sub("provenance"))
            ),
            "library_version": f.str("library_version", __version__),
            "format_version": version,
        }
        f.reject_unknown()
        for key, value in values.items():
            object.__setattr__(config, key, value)
        config._validate(source)
        return config

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

    # -- consistency ---------------------------------------------------------------------------
    def _validate(self, source: str) -> None:
        def bad(fieldname: str, problem: str) -> ConfigError:
            return ConfigError(f"{source}: field '{fieldname}' {problem}")

        if self.model_type not in MODEL_TYPES:
            raise bad("model_type", f"must be one of {list(MODEL_TYPES)}, got {self.model_type!r}")
        n, C = self.n_features, self.num_classes
        if n == 0:
            raise bad("selected_features", "must not be empty")
        if len(set(self.selected_features)) != n:
            raise bad("selected_features", "must not repeat a feature")
        out_of_range = [
            i for i in self.selected_features if not 0 <= i < self.backbone.num_features
        ]
        if out_of_range:
            raise bad(
                "selected_features",
                f"holds {out_of_range[:5]}, outside the backbone's {self.backbone.num_features} features",
            )
        if len(self.label_names) != C:
            raise bad("label_names", f"has {len(self.label_names)} names for num_classes={C}")
        if len(set(self.label_names)) != C:
            raise bad("label_names", "must not repeat a name (classes are looked up by name)")
        for name in ("feature_names", "feature_descriptions"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise bad(name, f"has {len(value)} entries for {n} selected features")
        a = self.assignment
        if len(a.class_features) != C:
            raise bad(
                "assignment.class_features", f"has {len(a.class_features)} rows for {C} classes"
            )
        if self.k > n:
            raise bad("k", f"is {self.k}, more than the {n} selected features")
        for c, row in enumerate(a.class_features):
            if len(set(row)) != len(row):
                raise bad(f"assignment.class_features[{c}]", "repeats a feature")
            if any(not 0 <= i < n for i in row):
                raise bad(f"assignment.class_features[{c}]", f"holds an index outside 0..{n - 1}")
        if self.model_type == "qpm":
            if a.class_weights is not None or a.bias is not None:
                raise bad("assignment", "of a QPM is binary: it has no class_weights and no bias")
            for c, row in enumerate(a.class_features):
                if len(row) != self.k:
                    raise bad(
                        f"assignment.class_features[{c}]",
                        f"has {len(row)} features; every QPM class uses exactly k={self.k}",
                    )
        else:
            if a.class_weights is None or a.bias is None:
                raise bad("assignment", "of a Q-SENN needs class_weights and bias")
            if len(a.class_weights) != C:
                raise bad(
                    "assignment.class_weights", f"has {len(a.class_weights)} rows for {C} classes"
                )
            for c, (row, weights) in enumerate(zip(a.class_features, a.class_weights)):
                if len(row) != len(weights):
                    raise bad(
                        f"assignment.class_weights[{c}]",
                        f"has {len(weights)} weights for {len(row)} features",
                    )
            if len(a.bias) != C:
                raise bad("assignment.bias", f"has {len(a.bias)} values for {C} classes")


def _int_row(f: FieldReader, key: str, i: int, row: Any) -> list[int]:
    if not isinstance(row, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in row):
        raise f.error(f"{key}[{i}]", "must be a list of integers")
    return row


def _float_row(f: FieldReader, key: str, i: int, row: Any) -> list[float]:
    if not isinstance(row, list) or any(
        isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in row
    ):
        raise f.error(f"{key}[{i}]", "must be a list of finite numbers")
    return row


def _opt_tuple(value: list | None) -> tuple | None:
    return None if value is None else tuple(value)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a partial one."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block succeeds
    and is removed when it fails, so `path` is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
