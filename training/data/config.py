"""The `data:` section of a training config: which dataset, where it lives, how much of it to use.

Parsing is strict (an unknown key, a wrong type or a value out of range is a DataConfigError
naming the field) so that a typo fails before any training starts, not hours into a run. The
checks that need the disk (the dataset's files exist, class folders are not empty) run in
`DataConfig.validate()` and again when the datasets are built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qpm_zoo._fields import FieldReader

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


class DataConfigError(ValueError):
    """The data section of a config, or the dataset files it points to, cannot be used."""


@dataclass(frozen=True)
class ConceptsConfig:
    """Options of the generated known-concept dataset (see training/data/concepts.py)."""

    num_classes: int = 12
    concepts_per_class: int = 4
    pool_size: int = 16
    image_size: int = 64
    train_size: int = 3000
    test_size: int = 1000
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = COLORS
    textures: tuple[str, ...] = ("solid", "striped")
    #: side of a concept's square as a share of the image side (min, max)
    scale_range: tuple[float, float] = (0.18, 0.30)
    max_rotation: float = 20.0
    #: probability that a new class copies an earlier class and swaps 1-2 of its concepts
    class_overlap: float = 0.75
    #: probability that an image also shows one pool concept its class does not have
    distractor_prob: float = 0.4
    #: probability that one of the class's concepts is partly covered by an occluder
    occlusion_prob: float = 0.25
    #: share of the concept's box the occluder covers (min, max)
    occlusion_range: tuple[float, float] = (0.3, 0.7)
    #: number of background clutter items (min, max)
    clutter_range: tuple[int, int] = (4, 10)
    #: largest box IoU between two concepts of one image (placement tries to stay below it)
    max_overlap: float = 0.1
    #: a concept counts as visible when at least this share of its pixels is not covered
    visible_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "shapes",
            "colors",
            "textures",
            "scale_range",
            "occlusion_range",
            "clutter_range",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def _parse(cls, f: FieldReader) -> ConceptsConfig:
        d = cls()
        values: dict[str, Any] = {}
        for key in ("concepts_per_class", "pool_size", "train_size", "test_size"):
            values[key] = f.int(key, getattr(d, key), minimum=1)
        values["num_classes"] = f.int("num_classes", d.num_classes, minimum=2)
        values["image_size"] = f.int("image_size", d.image_size, minimum=32)
        for key, vocabulary in (("shapes", SHAPES), ("colors", COLORS), ("textures", TEXTURES)):
            names = f.str_list(key, list(getattr(d, key)))
            if not names:
                raise f.error(key, f"must be a non-empty list of names from {list(vocabulary)}")
            bad = [n for n in names if n not in vocabulary]
            if bad:
                raise f.error(key, f"holds unknown name(s) {bad}; choose from {list(vocabulary)}")
            if len(set(names)) != len(names):
                raise f.error(key, f"holds duplicates: {names}")
            values[key] = tuple(names)
        values["scale_range"] = _range(f, "scale_range", d.scale_range, 0.05, 0.6)
        values["occlusion_range"] = _range(f, "occlusion_range", d.occlusion_range, 0.0, 1.0)
        clutter = f.int_list("clutter_range", list(d.clutter_range))
        if len(clutter) != 2 or not 0 <= clutter[0] <= clutter[1]:
            raise f.error(
                "clutter_range", f"must be [min, max] with 0 <= min <= max, got {clutter}"
            )
        values["clutter_range"] = tuple(clutter)
        values["max_rotation"] = _bounded(f, "max_rotation", d.max_rotation, 0.0, 180.0)
        for key in (
            "class_overlap",
            "distractor_prob",
            "occlusion_prob",
            "max_overlap",
            "visible_threshold",
        ):
            values[key] = _bounded(f, key, getattr(d, key), 0.0, 1.0)
        f.reject_unknown()

        k, pool, classes = values["concepts_per_class"], values["pool_size"], values["num_classes"]
        combos = len(values["shapes"]) * len(values["colors"]) * len(values["textures"])
        if pool > combos:
            raise f.error(
                "pool_size",
                f"is {pool}, but only {combos} distinct concepts exist with {len(values['shapes'])} "
                f"shapes x {len(values['colors'])} colors x {len(values['textures'])} textures",
            )
        if k > pool:
            raise f.error("concepts_per_class", f"is {k}, more than pool_size {pool}")
        if math.comb(pool, k) < classes:
            raise f.error(
                "num_classes",
                f"is {classes}, but only C({pool}, {k}) = {math.comb(pool, k)} distinct concept "
                "sets exist; raise pool_size or change concepts_per_class",
            )
        return cls(**values)


def _bounded(f: FieldReader, key: str, default: float, low: float, high: float) -> float:
    value = f.float(key, default)
    if not low <= value <= high:
        raise f.error(key, f"must be in [{low:g}, {high:g}], got {value:g}")
    return value


def _range(
    f: FieldReader, key: str, default: tuple[float, float], low: float, high: float
) -> tuple[float, float]:
    values = f.float_list(key, list(default))
    if len(values) != 2 or not low <= values[0] <= values[1] <= high:
        raise f.error(
            key, f"must be [min, max] with {low:g} <= min <= max <= {high:g}, got {values}"
        )
    return values[0], values[1]


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to train on and how much of it (the `data:` section of a training config)."""

    name: str = "concepts"
    root: Path | None = None
    crop_to_bbox: bool = False
    concepts: ConceptsConfig = field(default_factory=ConceptsConfig)
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0

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
        out: dict[str, Any] = {"name": self.name}
        if self.root is not None:
            out["root"] = str(self.root)
        if self.name in BOX_DATASETS:
            out["crop_to_bbox"] = self.crop_to_bbox
        if self.name == "concepts":
            out["concepts"] = self.concepts.to_dict()
        out.update(train_subset=self.train_subset, test_subset=self.test_subset, seed=self.seed)
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
        return cls._parse(FieldReader(data, source, path, error=DataConfigError), base_dir)

    @classmethod
    def _parse(cls, f: FieldReader, base_dir: str | Path | None) -> DataConfig:
        name = f.str("name", choices=DATASETS)
        root_text = f.str("root", None)
        if root_text is not None and not root_text.strip():
            raise f.error("root", "must not be empty")
        root = None
        if root_text is not None:
            root = Path(root_text).expanduser()
            if not root.is_absolute() and base_dir is not None:
                root = Path(base_dir) / root
        if name == "concepts" and root is not None:
            raise f.error("root", "is not used by the generated 'concepts' dataset; remove it")
        if name != "concepts" and root is None and DEFAULT_ROOTS[name] is None:
            raise f.error(
                "root", f"is required for dataset '{name}' (the folder holding its files)"
            )
        crop = f.bool("crop_to_bbox", False)
        if crop and name not in BOX_DATASETS:
            raise f.error("crop_to_bbox", f"applies only to {list(BOX_DATASETS)}, not to '{name}'")
        if "concepts" in f.data and name != "concepts":
            raise f.error("concepts", f"applies only to dataset 'concepts', not to '{name}'")
        concepts = (
            ConceptsConfig._parse(f.sub("concepts")) if "concepts" in f.data else ConceptsConfig()
        )
        f.used.add("concepts")
        out = cls(
            name=name,
            root=root,
            crop_to_bbox=crop,
            concepts=concepts,
            train_subset=f.int("train_subset", None, minimum=1),
            test_subset=f.int("test_subset", None, minimum=1),
            seed=f.int("seed", 0, minimum=0),
        )
        f.reject_unknown()
        return out

    def validate(self) -> None:
        """Check, without reading images, that the dataset's files are where the config says."""
        from .build import loader_for

        loader_for(self.name).check_files(self)
