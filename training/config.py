"""The training config (`configs/*.yaml|toml`): every stage's settings, validated before training.

Unknown keys, wrong types and impossible values are errors that name the file and the dotted
field, raised before any data is read or any model is built.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from qpm_zoo._fields import FieldReader

from .data.transforms import AUGMENTS

MODEL_TYPES = ("qpm", "qsenn")


class FitConfigError(ValueError):
    """The training config cannot be used (a field is unknown, mistyped or out of range)."""


def _reader(data: Any, source: str, path: str = "") -> FieldReader:
    return FieldReader(data, source, path, error=FitConfigError)


def _section(f: FieldReader, key: str) -> FieldReader:
    """A sub-section's reader; a missing section reads as empty (all defaults)."""
    return f.sub(key) if f.get(key, None) is not None else _reader({}, f.source, f.name(key))


def _positive(f: FieldReader, key: str, default: Any, integer: bool = False) -> Any:
    value = f.int(key, default) if integer else f.float(key, default)
    if value <= 0:
        raise f.error(key, f"must be positive, got {value}")
    return value


def _non_negative(f: FieldReader, key: str, default: float) -> float:
    value = f.float(key, default)
    if value < 0:
        raise f.error(key, f"must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class ModelSection:
    """The backbone and its input preprocessing."""

    backbone: str = "resnet50"
    pretrained: bool | str = False  #: false, true (timm or offline weights) or a weights file path
    reduced_strides: bool = False
    kwargs: dict = field(default_factory=dict)
    input_size: int = 224
    interpolation: str | None = None  #: None: the backbone's timm default
    crop_pct: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    @classmethod
    def parse(cls, f: FieldReader) -> ModelSection:
        pretrained = f.get("pretrained", False)
        if not isinstance(pretrained, (bool, str)):
            raise f.error("pretrained", "must be true, false or the path of a weights file")
        mean = f.float_list("mean", None)
        std = f.float_list("std", None)
        for key, value in (("mean", mean), ("std", std)):
            if value is not None and len(value) != 3:
                raise f.error(key, f"must hold 3 numbers, got {len(value)}")
        crop_pct = f.float("crop_pct", None)
        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise f.error("crop_pct", f"must be in (0, 1], got {crop_pct}")
        out = cls(
            backbone=f.str("backbone", "resnet50"),
            pretrained=pretrained,
            reduced_strides=f.bool("reduced_strides", False),
            kwargs=f.dict("kwargs", {}),
            input_size=_positive(f, "input_size", 224, integer=True),
            interpolation=f.str("interpolation", None),
            crop_pct=crop_pct,
            mean=None if mean is None else tuple(mean),
            std=None if std is None else tuple(std),
        )
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class TrainSection:
    """One SGD training phase (dense training or fine-tuning) with the feature diversity loss."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    step_size: int
    gamma: float
    fdl_weight: float
    dropout: float
    augment: str
    classifier_lr: float | None = None  #: dense only: the linear layer's learning rate

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.classifier_lr is None:  # only dense training has a separate classifier rate
            del out["classifier_lr"]
        return out

    @classmethod
    def parse(cls, f: FieldReader, defaults: TrainSection) -> TrainSection:
        d = defaults
        out = cls(
            epochs=f.int("epochs", d.epochs, minimum=0),
            batch_size=_positive(f, "batch_size", d.batch_size, integer=True),
            lr=_positive(f, "lr", d.lr),
            momentum=_non_negative(f, "momentum", d.momentum),
            weight_decay=_non_negative(f, "weight_decay", d.weight_decay),
            step_size=_positive(f, "step_size", d.step_size, integer=True),
            gamma=_positive(f, "gamma", d.gamma),
            fdl_weight=_non_negative(f, "fdl_weight", d.fdl_weight),
            dropout=f.float("dropout", d.dropout),
            augment=f.str("augment", d.augment, AUGMENTS),
            classifier_lr=(
                None if d.classifier_lr is None else _positive(f, "classifier_lr", d.classifier_lr)
            ),
        )
        if not 0 <= out.dropout < 1:
            raise f.error("dropout", f"must be in [0, 1), got {out.dropout}")
        if out.momentum >= 1:
            raise f.error("momentum", f"must be below 1, got {out.momentum}")
        f.reject_unknown()
        return out


#: The paper's recipe (CUB, ResNet-50): dense 150 epochs, fine-tuning 40 epochs.
PAPER_DENSE = TrainSection(
    epochs=150,
    batch_size=16,
    lr=5e-3,
    classifier_lr=1e-2,
    momentum=0.9,
    weight_decay=5e-4,
    step_size=30,
    gamma=0.4,
    fdl_weight=0.196,
    dropout=0.2,
    augment="paper",
)
PAPER_FINETUNE = TrainSection(
    epochs=40,
    batch_size=16,
    lr=1e-4,
    momentum=0.95,
    weight_decay=5e-4,
    step_size=10,
    gamma=0.4,
    fdl_weight=0.196,
    dropout=0.1,
    augment="paper",
)


@dataclass(frozen=True)
class AssignmentSection:
    """The discrete optimisation: n selected features, k per class, the solver's budget."""

    n: int = 50
    k: int = 5
    time_limit: float = 600.0
    mip_gap: float = 0.0

    @classmethod
    def parse(cls, f: FieldReader) -> AssignmentSection:
        out = cls(
            n=_positive(f, "n", 50, integer=True),
            k=_positive(f, "k", 5, integer=True),
            time_limit=_positive(f, "time_limit", 600.0),
            mip_gap=_non_negative(f, "mip_gap", 0.0),
        )
        if out.k > out.n:
            raise f.error("k", f"is {out.k}, more than n={out.n} selected features")
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class QSENNSection:
    """Q-SENN's sparsification and its rounds (method.md §5); n and k come from `assignment`."""

    rounds: int = 4
    later_epochs: int = 10  #: fine-tuning epochs of rounds 2.. (round 1 uses `finetune.epochs`)
    lr_decay: float = 0.9  #: round r ≥ 2 fine-tunes with finetune.lr · lr_decay^(r−2)
    selection_alpha: float = 0.8  #: elastic-net mix of the group-sparse feature selection
    layer_alpha: float = 0.99  #: elastic-net mix of the sparse layer
    path_steps: int = 30
    epsilon: float = 1e-3  #: the path ends at epsilon · λ_max

    @classmethod
    def parse(cls, f: FieldReader) -> QSENNSection:
        d = cls()
        out = cls(
            rounds=_positive(f, "rounds", d.rounds, integer=True),
            later_epochs=f.int("later_epochs", d.later_epochs, minimum=0),
            lr_decay=_positive(f, "lr_decay", d.lr_decay),
            selection_alpha=_positive(f, "selection_alpha", d.selection_alpha),
            layer_alpha=_positive(f, "layer_alpha", d.layer_alpha),
            path_steps=_positive(f, "path_steps", d.path_steps, integer=True),
            epsilon=_positive(f, "epsilon", d.epsilon),
        )
        for key in ("selection_alpha", "layer_alpha", "epsilon"):
            if getattr(out, key) > 1:
                raise f.error(key, f"must be at most 1, got {getattr(out, key)}")
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class RuntimeSection:
    """How to run, not what to compute: changing these never invalidates a finished stage."""

    device: str = "cpu"
    num_workers: int = 0
    eval_batch_size: int = 64
    threads: int | None = None

    @classmethod
    def parse(cls, f: FieldReader) -> RuntimeSection:
        out = cls(
            device=f.str("device", "cpu"),
            num_workers=f.int("num_workers", 0, minimum=0),
            eval_batch_size=_positive(f, "eval_batch_size", 64, integer=True),
            threads=f.int("threads", None, minimum=1),
        )
        f.reject_unknown()
        return out


@dataclass(frozen=True)
class FitConfig:
    """A whole training run: data → dense → statistics → assignment → fine-tuning → metrics."""

    data: Any  #: training.data.DataConfig
    model: ModelSection
    dense: TrainSection
    assignment: AssignmentSection
    finetune: TrainSection
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    model_type: str = "qpm"
    seed: int = 0
    qsenn: QSENNSection = field(default_factory=QSENNSection)
    publish: dict = field(default_factory=dict)  #: model-card metadata: license, dataset, ...
    source: str = "<dict>"

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "<dict>", base_dir: str | Path | None = None
    ) -> FitConfig:
        from .data import DataConfig

        f = _reader(data, source)
        model_type = f.str("model_type", "qpm", MODEL_TYPES)
        data_section = DataConfig.from_dict(
            f.get("data"), source=source, path="data", base_dir=base_dir
        )
        config = cls(
            data=data_section,
            model=ModelSection.parse(f.sub("model")),
            dense=TrainSection.parse(_section(f, "dense"), PAPER_DENSE),
            assignment=AssignmentSection.parse(_section(f, "assignment")),
            finetune=TrainSection.parse(_section(f, "finetune"), PAPER_FINETUNE),
            runtime=RuntimeSection.parse(_section(f, "runtime")),
            model_type=model_type,
            seed=f.int("seed", 0, minimum=0),
            qsenn=QSENNSection.parse(_section(f, "qsenn")),
            publish=f.dict("publish", {}),
            source=source,
        )
        f.reject_unknown()
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: dict | None = None) -> FitConfig:
        """Read a YAML or TOML file (following `extends:`); `overrides` (dotted keys) replace
        values before validation."""
        path = Path(path)
        data = read_config_file(path)
        for dotted, value in (overrides or {}).items():
            set_dotted(data, dotted, value, str(path))
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

    def to_dict(self) -> dict:
        """JSON-safe; this is what a checkpoint's `training` recipe records."""
        out = {
            "model_type": self.model_type,
            "seed": self.seed,
            "data": self.data.to_dict(),
            "model": asdict(self.model),
            "dense": self.dense.to_dict(),
            "assignment": asdict(self.assignment),
            "finetune": self.finetune.to_dict(),
            "runtime": asdict(self.runtime),
        }
        if self.model_type == "qsenn":
            out["qsenn"] = asdict(self.qsenn)
        if self.publish:
            out["publish"] = self.publish
        return json.loads(json.dumps(out))

    def fingerprint(self, *sections: str) -> str:
        """A short hash of the named sections: what a cached stage's result depends on."""
        full = self.to_dict()
        chosen = {name: full.get(name) for name in sections}
        text = json.dumps(chosen, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_config_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping; `extends: OTHER` (relative to the file) is read first and this
    file's values are merged over it, section by section."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = f" (extended by {chain[-1]})" if chain else ""
        raise FitConfigError(f"{path}: no such config file{where}") from None
    except OSError as e:
        raise FitConfigError(f"{path}: cannot be read ({e})") from None
    data = parse_config_text(text, path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise FitConfigError(f"{path}: field 'extends' must be the path of another config file")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise FitConfigError(f"{path}: 'extends' forms a cycle through {base_path}")
    return deep_merge(read_config_file(base_path, chain + (path.resolve(),)), data)


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_config_text(text: str, path: Path) -> dict:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise FitConfigError(f"{path}: not valid TOML ({e})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            where = (
                f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            )
            raise FitConfigError(
                f"{path}: not valid YAML{where}: {e.problem or e.context}"
            ) from None
        except yaml.YAMLError as e:
            raise FitConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(data, dict):
            raise FitConfigError(f"{path}: the top level must be a mapping")
        return data
    raise FitConfigError(
        f"{path}: unknown config format '{path.suffix}' (use .yaml, .yml or .toml)"
    )


def set_dotted(data: dict, dotted: str, value: Any, source: str) -> None:
    """Set `a.b.c = value` in nested dicts (command-line overrides such as `dense.epochs=2`)."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise FitConfigError(f"{source}: cannot override '{dotted}': '{key}' is not a section")
        node = child
    node[keys[-1]] = value
