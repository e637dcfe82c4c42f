"""The training config (`configs/*.yaml|toml`): every stage's settings, validated before training.

Unknown keys, wrong types and impossible values are errors that name the file and the dotted
field, raised before any data is read or any model is built.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from torch import device as torch_device

from qpm_zoo.config import AdapterConfig, AdapterKind, Interpolation, timm_kwargs
from qpm_zoo.errors import ConfigError

from .config_files import read_config_file
from .data.config import DataConfig
from .data.transforms import AUGMENTS
from .errors import FitConfigError
from .runtime.device import DEVICE_CHOICES
from .runtime.precision import PRECISIONS
from .schema import (
    FieldProblem,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    in_interval,
    validate,
)

MODEL_TYPES = ("qpm", "qsenn")

Fraction = Annotated[PositiveFloat, Field(le=1)]  #: in (0, 1]


class AdapterSection(Section):
    """The adapter on the backbone's maps (config.json's backbone.adapter, docs/method.md §8):
    `conv1x1` (one 1×1 convolution + batch norm + ReLU) or `mlp` (`layers` of them, `hidden`
    wide; 2 layers unless set)."""

    kind: AdapterKind
    features: PositiveInt  #: its output channels: what the assignment selects n of
    hidden: PositiveInt | None = None  #: mlp only
    layers: PositiveInt | None = None  #: mlp only (default 2); conv1x1 has 1

    @model_validator(mode="after")
    def _consistent(self) -> AdapterSection:
        try:
            self.to_config()
        except ConfigError as e:  # "AdapterConfig: FIELD: PROBLEM"
            field, _, problem = str(e).removeprefix("AdapterConfig: ").partition(": ")
            raise FieldProblem(field, problem) from None
        return self

    def to_config(self) -> AdapterConfig:
        """config.json's description of this adapter."""
        layers = self.layers or (1 if self.kind == "conv1x1" else 2)
        return AdapterConfig(
            kind=self.kind, features=self.features, hidden=self.hidden, layers=layers
        )


class ModelSection(Section):
    """The backbone, its adapter, whether it is frozen, and its input preprocessing."""

    backbone: StrictStr = "resnet50"
    pretrained: StrictBool | StrictStr = (
        False  #: false, true (timm or offline weights) or a weights file path
    )
    reduced_strides: StrictBool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)  #: as config.json's backbone.kwargs
    adapter: AdapterSection | None = None  #: None: QPM selects from the backbone's own maps
    #: train only the adapter (and the classifier): the timm model keeps its weights, so a
    #: phase without augmentation trains on its maps computed once (docs/method.md §8)
    freeze_backbone: StrictBool = False
    input_size: PositiveInt = 224
    interpolation: Interpolation | None = None  #: None: the backbone's timm default
    crop_pct: Fraction | None = None
    mean: tuple[StrictFloat, ...] | None = None
    std: tuple[PositiveFloat, ...] | None = None  #: divides the pixels: 0 is refused

    @field_validator("input_size")
    @classmethod
    def _within_the_limit(cls, value: int) -> int:
        from qpm_zoo.limits import current_limits, variable_for

        largest = current_limits().max_input_side
        if value > largest:
            raise ValueError(
                f"is {value}, larger than {largest} px (the limit; raise it with "
                f"{variable_for('max_input_side')})"
            )
        return value

    @field_validator("kwargs")
    @classmethod
    def _known_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return timm_kwargs(value)
        except ValueError as e:
            raise ValueError(str(e).removeprefix(": ")) from None

    @field_validator("pretrained", mode="before")
    @classmethod
    def _bool_or_path(cls, value: Any) -> Any:
        if not isinstance(value, (bool, str)):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueErrors
                "must be true, false or the path of a weights file"
            )
        return value

    @field_validator("mean", "std")
    @classmethod
    def _three_numbers(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and len(value) != 3:
            raise ValueError(f"must hold 3 numbers, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _frozen_needs_an_adapter(self) -> ModelSection:
        if self.freeze_backbone and self.adapter is None:
            raise FieldProblem(
                "freeze_backbone",
                "needs model.adapter: with the backbone frozen and no adapter, QPM's "
                "fine-tuning would have nothing to train",
            )
        return self


Dropout = Annotated[StrictFloat, in_interval(0.0, 1.0, high_open=True)]
Augment = Literal[AUGMENTS]  # type: ignore[valid-type]


class TrainSection(Section):
    """One SGD training phase with the feature diversity loss; defaults: the paper's recipe
    (CUB, ResNet-50), which dense training and fine-tuning share but for what they override."""

    epochs: NonNegativeInt = 150
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 5e-3
    momentum: Annotated[NonNegativeFloat, Field(lt=1)] = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    step_size: PositiveInt = 30
    gamma: PositiveFloat = 0.4
    fdl_weight: NonNegativeFloat = 0.196
    dropout: Dropout = 0.2
    augment: Augment = "paper"

    def to_dict(self) -> dict:
        return self.model_dump()


class DenseSection(TrainSection):
    """Dense training (the paper: 150 epochs); the linear layer has a learning rate of its own."""

    classifier_lr: PositiveFloat = 1e-2


class FinetuneSection(TrainSection):
    """Fine-tuning of the QPM and of each Q-SENN round (the paper: 40 epochs)."""

    epochs: NonNegativeInt = 40
    lr: PositiveFloat = 1e-4
    momentum: Annotated[NonNegativeFloat, Field(lt=1)] = 0.95
    step_size: PositiveInt = 10
    dropout: Dropout = 0.1


class AssignmentSection(Section):
    """The discrete optimisation: n selected features, k per class, the solver's budget."""

    n: PositiveInt = 50
    k: PositiveInt = 5
    time_limit: PositiveFloat = 600.0
    mip_gap: NonNegativeFloat = 0.0
    #: w_R, the weight of the redundancy term Z_R (docs/method.md §3); 1 is the paper's
    #: formulation, larger values matter when 1000/(k·C) dwarfs R̃ (few classes)
    redundancy_weight: NonNegativeFloat = 1.0
    #: what R compares (docs/method.md §3): "class_similarity" (the paper: the classes two
    #: features prefer) or "within_class" (ours: how two features vary together inside a class)
    redundancy: Literal["class_similarity", "within_class"] = "class_similarity"

    @model_validator(mode="after")
    def _k_within_n(self) -> AssignmentSection:
        if self.k > self.n:
            raise FieldProblem("k", f"is {self.k}, more than n={self.n} selected features")
        return self


class QSENNSection(Section):
    """Q-SENN's sparsification and its rounds (docs/method.md §5); n and k come from `assignment`."""

    rounds: PositiveInt = 4
    later_epochs: NonNegativeInt = (
        10  #: fine-tuning epochs of rounds 2.. (round 1: finetune.epochs)
    )
    lr_decay: PositiveFloat = 0.9  #: round r ≥ 2 fine-tunes with finetune.lr · lr_decay^(r−2)
    selection_alpha: Fraction = 0.8  #: elastic-net mix of the group-sparse feature selection
    layer_alpha: Fraction = 0.99  #: elastic-net mix of the sparse layer
    path_steps: PositiveInt = 30
    epsilon: Fraction = 1e-3  #: the path ends at epsilon · λ_max


class RuntimeSection(Section):
    """How to run, not what to compute: changing these never invalidates a finished stage."""

    device: StrictStr = "auto"  #: auto (CUDA when present, else CPU), cpu, cuda or cuda:N
    precision: Literal[PRECISIONS] = "fp32"  # type: ignore[valid-type]
    channels_last: StrictBool = False  #: NHWC memory format for CNNs (faster with autocast)
    compile: StrictBool = False  #: wrap the training model with torch.compile
    num_workers: NonNegativeInt | None = None  #: None: chosen from the machine's CPUs
    eval_batch_size: PositiveInt = 64
    threads: Annotated[StrictInt, Field(ge=1)] | None = None
    scale_lr: StrictBool = False  #: multiply learning rates by the number of processes

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in DEVICE_CHOICES:
            return value
        try:
            torch_device(value)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"{value!r} is no torch device; use one of {', '.join(DEVICE_CHOICES)} or "
                "e.g. 'cuda:1'"
            ) from None
        return value


def _coverages(values: tuple[float, ...]) -> tuple[float, ...]:
    if not values:
        raise ValueError("must list at least one coverage, e.g. [0.9, 0.95]")
    bad = [v for v in values if not 0 < v < 1]
    if bad:
        raise ValueError(f"must hold coverages between 0 and 1 (exclusive), got {bad}")
    if len(set(values)) != len(values):
        raise ValueError(f"repeats a coverage: {list(values)}")
    return values


class ConformalSection(Section):
    """Prediction sets: the `calibrate` stage computes their thresholds on the held-out split
    `data.calibration` asks for (docs/method.md §9); without that split it does not run."""

    coverage: Annotated[tuple[StrictFloat, ...], AfterValidator(_coverages)] = (0.9, 0.95)
    score: Literal["lac", "aps", "raps"] = "lac"
    raps_lambda: NonNegativeFloat = 0.01  #: raps only: penalty per rank beyond raps_k_reg
    raps_k_reg: NonNegativeInt = 5  #: raps only


#: sections that may be left out (or written as null): all their fields have defaults
_OPTIONAL_SECTIONS = ("dense", "assignment", "finetune", "runtime", "qsenn", "conformal")


#: the key of a checkpoint's `training` record that holds the scale it was trained at (world
#: size, device, precision): a fact about the run, not a fit config field
SCALE_KEY = "scale"


class FitConfig(Section):
    """A whole training run: data → dense → statistics → assignment → fine-tuning → metrics."""

    data: DataConfig
    model: ModelSection
    dense: DenseSection = DenseSection()
    assignment: AssignmentSection = AssignmentSection()
    finetune: FinetuneSection = FinetuneSection()
    runtime: RuntimeSection = RuntimeSection()
    model_type: Literal[MODEL_TYPES] = "qpm"  # type: ignore[valid-type]
    seed: NonNegativeInt = 0
    qsenn: QSENNSection = QSENNSection()
    conformal: ConformalSection = ConformalSection()
    publish: dict[str, Any] = Field(
        default_factory=dict
    )  #: model-card metadata: license, dataset, ...
    _source: str = PrivateAttr(default="<dict>")

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (k in _OPTIONAL_SECTIONS and v is None)}
        return data

    @property
    def source(self) -> str:
        """The file (or '<dict>') the config was read from."""
        return self._source

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "<dict>", base_dir: str | Path | None = None
    ) -> FitConfig:
        """Validate a config mapping; relative data roots are resolved against `base_dir`."""
        config = validate(
            cls, data, source=source, path="", error=FitConfigError, context={"base_dir": base_dir}
        )
        config._source = source
        return config

    @classmethod
    def from_training_record(cls, training: Mapping[str, Any], source: str) -> FitConfig:
        """The recipe a checkpoint's `training` record holds (without the scale it ran at)."""
        return cls.from_dict(
            {key: value for key, value in training.items() if key != SCALE_KEY}, source=source
        )

    @classmethod
    def load(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> FitConfig:
        """Read a YAML or TOML file (following `extends:`); `overrides` (dotted keys) replace
        values before validation."""
        path = Path(path)
        data = read_config_file(path, overrides)
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

    def with_device(self, device: str) -> FitConfig:
        """The same config run on another torch device (runtime only: no stage reruns)."""
        config = self.model_copy(
            update={"runtime": self.runtime.model_copy(update={"device": device})}
        )
        config._source = self._source
        return config

    def to_dict(self) -> dict:
        """JSON-safe; this is what a checkpoint's `training` recipe records."""
        out = {
            "model_type": self.model_type,
            "seed": self.seed,
            "data": self.data.to_dict(),
            "model": self.model.model_dump(),
            "dense": self.dense.to_dict(),
            "assignment": self.assignment.model_dump(),
            "finetune": self.finetune.to_dict(),
            "runtime": self.runtime.model_dump(),
        }
        if self.model_type == "qsenn":
            out["qsenn"] = self.qsenn.model_dump()
        if self.data.calibration is not None:  # the section is used only then
            out["conformal"] = self.conformal.model_dump()
        if self.publish:
            out["publish"] = self.publish
        return json.loads(json.dumps(out))

    def fingerprint(self, *sections: str) -> str:
        """A short hash of the named sections: what a cached stage's result depends on.

        Only fields that differ from their defaults count, so a release that adds a field
        with a default (the behaviour it had before) leaves every finished stage valid; the
        flip side: a changed default reruns nothing, as any other code change.
        `data.calibration` counts only for the stages that read `conformal` (the calibrate
        stage), unless the calibration images are carved out of the training images: adding
        a calibration split to a finished run then reruns nothing but the calibration."""
        full = _without_defaults(self, self.to_dict())
        chosen = {name: full.get(name) for name in sections}
        if "data" in chosen and "conformal" not in sections and not self.data.carves_calibration:
            chosen["data"] = {k: v for k, v in chosen["data"].items() if k != "calibration"}
        text = json.dumps(chosen, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_defaults(section: BaseModel, dumped: dict) -> dict:
    """`dumped` (a section's JSON form) less the fields whose value is their default, section
    by section; keys that are no field of the section (computed ones) are kept."""
    out = {}
    fields = type(section).model_fields
    for key, value in dumped.items():
        field = fields.get(key)
        if field is None:
            out[key] = value
            continue
        current = getattr(section, key)
        if isinstance(current, BaseModel) and isinstance(value, dict):
            inner = _without_defaults(current, value)
            if inner or field.get_default(call_default_factory=True) is None:
                out[key] = inner  # a section present where its default is none counts, even empty
        elif current != field.get_default(call_default_factory=True):
            out[key] = value
    return out


def load_fit_config(path: Path, overrides: list[str]) -> FitConfig:
    """A config file with its `--set KEY=VALUE` overrides, checked down to the dataset's files
    and the backbone timm would build (FitConfigError or DataConfigError otherwise): what `fit`
    and `demo` start from, so nothing fails after the dense stage has started."""
    from .config_files import parse_overrides
    from .data import check_dataset_files

    config = FitConfig.load(path, parse_overrides(overrides))
    check_dataset_files(config.data)
    check_model_fits(config, class_count(config))
    return config


#: Classes of the datasets whose class count is fixed (the others: their config or folders).
_FIXED_CLASS_COUNTS = {"fashion_mnist": 10, "cub200": 200, "stanford_cars": 196}


def class_count(config: FitConfig) -> int:
    """The number of classes the run will train, without reading an image."""
    data = config.data
    if data.name == "concepts":
        return data.concepts.num_classes
    if data.name == "imagefolder":
        from .data.imagefolder import check_files

        return len(check_files(data)["train"])
    return _FIXED_CLASS_COUNTS[data.name]


def check_model_fits(config: FitConfig, num_classes: int) -> None:
    """What only timm, the disk and the class count can tell, checked before any stage runs:
    the backbone builds (name, kwargs, reduced strides, size limit; on the meta device, so
    nothing is allocated), a pretrained file exists, n ≤ its features, and there are enough
    k-subsets of the n features for every class to have its own (QPM, docs/method.md §3)."""
    from qpm_zoo.backbone import check_backbone

    m, source = config.model, config.source
    adapter = None if m.adapter is None else m.adapter.to_config()
    try:
        features = check_backbone(m.backbone, m.kwargs, m.reduced_strides, m.input_size, adapter)
    except ConfigError as e:
        raise FitConfigError(f"{source}: model: {e}") from None
    if isinstance(m.pretrained, str) and not Path(m.pretrained).expanduser().is_file():
        raise FitConfigError(
            f"{source}: field 'model.pretrained': weights file {m.pretrained} does not exist"
        )
    n, k = config.assignment.n, config.assignment.k
    if n > features:
        raise FitConfigError(
            f"{source}: field 'assignment.n' is {n}, more than the {features} features of "
            f"backbone '{m.backbone}'" + ("" if adapter is None else " (its adapter's)")
        )
    if config.model_type == "qpm" and math.comb(n, k) < num_classes:
        raise FitConfigError(
            f"{source}: field 'assignment.k': {n} features give only {math.comb(n, k)} distinct "
            f"sets of k={k}, fewer than the {num_classes} classes (each class needs its own)"
        )
