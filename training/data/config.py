"""The `data:` section of a training config: which dataset, where it lives, how much of it to use.

Parsing is strict (an unknown key, a wrong type or a value out of range is a DataConfigError
naming the field) so that a typo fails before any training starts, not hours into a run. The
checks that need the disk (the dataset's files exist, class folders are not empty) run in
`training.data.check_dataset_files(cfg)` and again when the datasets are built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import DataConfigError
from ..schema import (
    FieldProblem,
    NonNegativeInt,
    PositiveInt,
    Probability,
    Section,
    in_interval,
    kind,
    validate,
)

DATASETS = ("concepts", "fashion_mnist", "imagefolder", "cub200", "stanford_cars")

#: Where a dataset is found when `root` is not given (None: `root` is required).
DEFAULT_ROOTS: dict[str, str | None] = {
    "concepts": None,  # generated, no files
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",  # Debian package dataset-fashion-mnist
    "imagefolder": None,
    "cub200": None,
    "stanford_cars": None,
}

#: Datasets with ground-truth object boxes that `crop_to_bbox` can crop to.
BOX_DATASETS = ("cub200", "stanford_cars")

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "crescent")
COLORS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")
TEXTURES = ("solid", "striped", "dotted")


def _names_from(vocabulary: tuple[str, ...]) -> AfterValidator:
    """A non-empty list of distinct names, each one of `vocabulary`."""

    def check(names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            raise ValueError(f"must be a non-empty list of names from {list(vocabulary)}")
        bad = [n for n in names if n not in vocabulary]
        if bad:
            raise ValueError(f"holds unknown name(s) {bad}; choose from {list(vocabulary)}")
        if len(set(names)) != len(names):
            raise ValueError(f"holds duplicates: {list(names)}")
        return names

    return AfterValidator(check)


def _min_max(low: float, high: float) -> AfterValidator:
    """[min, max] with low <= min <= max <= high."""

    def check(values: tuple) -> tuple:
        if len(values) != 2 or not low <= values[0] <= values[1] <= high:
            bounds = f"{low:g} <= min <= max <= {high:g}" if high != math.inf else "0 <= min <= max"
            raise ValueError(f"must be [min, max] with {bounds}, got {list(values)}")
        return values

    return AfterValidator(check)


Names = tuple[StrictStr, ...]
FloatPair = tuple[StrictFloat, ...]


class ConceptsConfig(Section):
    """Options of the generated known-concept dataset (see training/data/concepts.py)."""

    num_classes: Annotated[StrictInt, Field(ge=2)] = 12
    concepts_per_class: PositiveInt = 4
    pool_size: PositiveInt = 16
    image_size: Annotated[StrictInt, Field(ge=32)] = 64
    train_size: PositiveInt = 3000
    test_size: PositiveInt = 1000
    shapes: Annotated[Names, _names_from(SHAPES)] = SHAPES
    colors: Annotated[Names, _names_from(COLORS)] = COLORS
    textures: Annotated[Names, _names_from(TEXTURES)] = ("solid", "striped")
    #: side of a concept's square as a share of the image side (min, max)
    scale_range: Annotated[FloatPair, _min_max(0.05, 0.6)] = (0.18, 0.30)
    max_rotation: Annotated[StrictFloat, in_interval(0.0, 180.0)] = 20.0
    #: probability that a new class copies an earlier class and swaps 1-2 of its concepts
    class_overlap: Probability = 0.75
    #: probability that an image also shows one pool concept its class does not have
    distractor_prob: Probability = 0.4
    #: probability that one of the class's concepts is partly covered by an occluder
    occlusion_prob: Probability = 0.25
    #: share of the concept's box the occluder covers (min, max)
    occlusion_range: Annotated[FloatPair, _min_max(0.0, 1.0)] = (0.3, 0.7)
    #: number of background clutter items (min, max)
    clutter_range: Annotated[tuple[NonNegativeInt, ...], _min_max(0, math.inf)] = (4, 10)
    #: largest box IoU between two concepts of one image (placement tries to stay below it)
    max_overlap: Probability = 0.1
    #: a concept counts as visible when at least this share of its pixels is not covered
    visible_threshold: Probability = 0.5

    @model_validator(mode="after")
    def _enough_concepts(self) -> ConceptsConfig:
        k, pool, classes = self.concepts_per_class, self.pool_size, self.num_classes
        combos = len(self.shapes) * len(self.colors) * len(self.textures)
        if pool > combos:
            raise FieldProblem(
                "pool_size",
                f"is {pool}, but only {combos} distinct concepts exist with {len(self.shapes)} "
                f"shapes x {len(self.colors)} colors x {len(self.textures)} textures",
            )
        if k > pool:
            raise FieldProblem("concepts_per_class", f"is {k}, more than pool_size {pool}")
        if math.comb(pool, k) < classes:
            raise FieldProblem(
                "num_classes",
                f"is {classes}, but only C({pool}, {k}) = {math.comb(pool, k)} distinct concept "
                "sets exist; raise pool_size or change concepts_per_class",
            )
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


class DataConfig(Section):
    """Which dataset to train on and how much of it (the `data:` section of a training config)."""

    name: Literal[DATASETS]  # type: ignore[valid-type]
    root: Path | None = None
    crop_to_bbox: StrictBool = False
    concepts: ConceptsConfig = ConceptsConfig()
    train_subset: PositiveInt | None = None
    test_subset: PositiveInt | None = None
    #: labelled images held out from training to calibrate prediction sets (docs/method.md §9):
    #: a generated split of their own for 'concepts'; else training images that train_subset
    #: leaves out, or, without train_subset, a class-stratified share carved from the training
    #: images before training (which then trains on the rest)
    calibration: PositiveInt | None = None
    seed: NonNegativeInt = 0

    @field_validator("root", mode="before")
    @classmethod
    def _resolve_root(cls, value: Any, info: ValidationInfo) -> Any:
        """A relative root is relative to the config file's folder (`base_dir` in the context)."""
        if value is None or isinstance(value, Path):
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {kind(value)}")  # noqa: TRY004 - pydantic wants ValueError
        if not value.strip():
            raise ValueError("must not be empty")
        root = Path(value).expanduser()
        base_dir = (info.context or {}).get("base_dir")
        return Path(base_dir) / root if not root.is_absolute() and base_dir is not None else root

    @model_validator(mode="after")
    def _fits_the_dataset(self) -> DataConfig:
        name = self.name
        if name == "concepts" and self.root is not None:
            raise FieldProblem("root", "is not used by the generated 'concepts' dataset; remove it")
        if name != "concepts" and self.root is None and DEFAULT_ROOTS[name] is None:
            raise FieldProblem(
                "root", f"is required for dataset '{name}' (the folder holding its files)"
            )
        if self.crop_to_bbox and name not in BOX_DATASETS:
            raise FieldProblem(
                "crop_to_bbox", f"applies only to {list(BOX_DATASETS)}, not to '{name}'"
            )
        if "concepts" in self.model_fields_set and name != "concepts":
            raise FieldProblem("concepts", f"applies only to dataset 'concepts', not to '{name}'")
        return self

    @property
    def carves_calibration(self) -> bool:
        """Whether the calibration split takes images the model would otherwise train on (no
        split of its own, no train_subset leaving images out)."""
        return self.calibration is not None and self.name != "concepts" and not self.train_subset

    @property
    def dataset_root(self) -> Path:
        """The folder to read: `root`, or the dataset's default location."""
        if self.root is not None:
            return self.root
        default = DEFAULT_ROOTS.get(self.name)
        if default is None:
            raise DataConfigError(f"dataset '{self.name}' needs a root folder (field 'data.root')")
        return Path(default)

    def to_dict(self) -> dict:
        """JSON-safe, with only the fields that apply to this dataset (a checkpoint's recipe)."""
        out: dict[str, Any] = {"name": self.name}
        if self.root is not None:
            out["root"] = str(self.root)
        if self.name in BOX_DATASETS:
            out["crop_to_bbox"] = self.crop_to_bbox
        if self.name == "concepts":
            out["concepts"] = self.concepts.to_dict()
        out.update(train_subset=self.train_subset, test_subset=self.test_subset)
        if self.calibration is not None:  # absent when unset: older recipes keep their keys
            out["calibration"] = self.calibration
        out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(
        cls,
        data: Any,
        source: str = "config",
        base_dir: str | Path | None = None,
        path: str = "data",
    ) -> DataConfig:
        """Parse a `data:` mapping strictly. Relative roots are resolved against `base_dir`
        (the config file's folder) when given. Errors read `SOURCE: field 'data.KEY' ...`."""
        return validate(
            cls,
            data,
            source=source,
            path=path,
            error=DataConfigError,
            context={"base_dir": base_dir},
        )
