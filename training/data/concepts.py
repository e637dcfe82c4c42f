"""The known-concept dataset: generated images whose true concepts are known per image and class.

Why it exists: on real data nobody knows which parts a class "really" has, so nobody can check
whether QPM's features and class-feature assignment recover them. Here each class is a set of
`k` concepts (a shape in a colour and texture, e.g. "striped blue triangle") from a shared pool;
classes overlap like bird species (most concepts shared, one or two swapped). An image of a
class shows all of its concepts at random places and sizes on a cluttered background, sometimes
with a distractor (a pool concept of other classes) and an occluder, so no single part decides
the class.

Everything is deterministic from (seed, split, index), cheap enough to generate inside
`__getitem__`, and split in two steps: `layout()` decides what goes where (this alone gives the
ground truth, no pixels needed) and `render()` draws it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from qpm_zoo.config import PreprocessConfig
from qpm_zoo.preprocess import ImagePreprocessor

from .base import DataSplits, ImageDataset
from .concept_drawing import (
    COLOR_RGB,
    TEXTURE_INK,
    TexturePatterns,
    background,
    draw_clutter,
    mask_box,
    muted_color,
    shape_mask,
)
from .config import ConceptsConfig, DataConfig

SPLITS = ("train", "test", "calibration")
_SPLIT_STREAM = {"train": 1, "test": 2, "calibration": 3}  #: each split its own images
_CLASS_STREAM = 0


# -- ground truth -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    """One concept of the pool: a shape in a colour with a texture."""

    shape: str
    color: str
    texture: str

    @property
    def name(self) -> str:
        prefix = "" if self.texture == "solid" else f"{self.texture} "
        return f"{prefix}{self.color} {self.shape}"


@dataclass(frozen=True)
class ConceptInstance:
    """One concept drawn in one image.

    `box` is (x0, y0, x1, y1) in pixel coordinates of the image, where pixel column i spans
    [i, i + 1): the drawn shape covers pixel columns x0 .. x1-1 and rows y0 .. y1-1, i.e. the
    region x0 <= x <= x1, y0 <= y <= y1 (the convention of training.metrics' pointing game).
    `visible` is False when less than the configured share of its pixels survives occluders
    and overlapping concepts. `distractor` marks a concept that is not one of the image's class
    concepts.
    """

    concept_id: int
    box: tuple[float, float, float, float]
    visible: bool
    distractor: bool = False

    def contains(self, x: float, y: float) -> bool:
        """Whether the point (x, y) (pixel coordinates as above) lies inside the box."""
        x0, y0, x1, y1 = self.box
        return x0 <= x <= x1 and y0 <= y <= y1

    def to_dict(self) -> dict:
        return {
            "concept_id": self.concept_id,
            "box": list(self.box),
            "visible": self.visible,
            "distractor": self.distractor,
        }


@dataclass(frozen=True)
class ImageTruth:
    """Ground truth of one generated image: its class and the concepts drawn in it."""

    label: int
    instances: tuple[ConceptInstance, ...]

    def concepts(self, visible_only: bool = True) -> frozenset[int]:
        return frozenset(i.concept_id for i in self.instances if i.visible or not visible_only)

    def instance(self, concept_id: int) -> ConceptInstance | None:
        """The instance of a concept in this image, or None (a concept appears at most once)."""
        for inst in self.instances:
            if inst.concept_id == concept_id:
                return inst
        return None

    def annotations(self) -> list[tuple[int, tuple[float, float, float, float], bool]]:
        """(concept_id, box, visible) per instance: what training.metrics' pointing game takes."""
        return [(i.concept_id, i.box, i.visible) for i in self.instances]

    def to_dict(self) -> dict:
        return {"label": self.label, "concepts": [i.to_dict() for i in self.instances]}


@dataclass(frozen=True)
class ConceptGroundTruth:
    """What the metrics compare learned features and assignments against.

    `train[i]` / `test[i]` describe image i of the training / test dataset returned by
    `build_datasets` (after any subset), `class_concepts[c]` is class c's concept set.
    """

    concept_names: tuple[str, ...]
    class_concepts: tuple[frozenset[int], ...]
    image_size: int
    train: tuple[ImageTruth, ...]
    test: tuple[ImageTruth, ...]
    #: (width, height) of the images the boxes refer to: the generated size, or the model
    #: input after `as_seen`
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.input_size is None:
            object.__setattr__(self, "input_size", (self.image_size, self.image_size))

    @property
    def num_concepts(self) -> int:
        return len(self.concept_names)

    def images(self, split: str) -> tuple[ImageTruth, ...]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.train if split == "train" else self.test

    def presence(self, split: str, visible_only: bool = True) -> np.ndarray:
        """Boolean [N, K]: concept k is in image n (by default only when visible)."""
        images = self.images(split)
        out = np.zeros((len(images), self.num_concepts), dtype=bool)
        for n, truth in enumerate(images):
            out[n, list(truth.concepts(visible_only))] = True
        return out

    def class_concept_matrix(self) -> np.ndarray:
        """Boolean [C, K]: class c has concept k (the true assignment)."""
        out = np.zeros((len(self.class_concepts), self.num_concepts), dtype=bool)
        for c, concepts in enumerate(self.class_concepts):
            out[c, sorted(concepts)] = True
        return out

    def as_seen(self, preprocessing: PreprocessConfig) -> ConceptGroundTruth:
        """The same ground truth with boxes in the coordinates of the model input after the
        evaluation resize and centre crop of `preprocessing` (e.g. crop_pct < 1 zooms in and
        cuts the border). A concept cut off entirely by the crop becomes invisible."""
        preprocessor = ImagePreprocessor(preprocessing)
        (rw, rh), (left, top) = preprocessor.geometry(self.image_size, self.image_size)
        sx, sy = rw / self.image_size, rh / self.image_size
        width, height = preprocessor.width, preprocessor.height

        def move(truth: ImageTruth) -> ImageTruth:
            moved = []
            for inst in truth.instances:
                x0, y0, x1, y1 = inst.box
                box = (
                    min(max(x0 * sx - left, 0.0), width),
                    min(max(y0 * sy - top, 0.0), height),
                    min(max(x1 * sx - left, 0.0), width),
                    min(max(y1 * sy - top, 0.0), height),
                )
                inside = box[2] > box[0] and box[3] > box[1]
                moved.append(dataclasses.replace(inst, box=box, visible=inst.visible and inside))
            return ImageTruth(truth.label, tuple(moved))

        if (rw, rh, left, top, width, height) == (
            self.image_size,
            self.image_size,
            0,
            0,
            self.image_size,
            self.image_size,
        ):
            return self
        return dataclasses.replace(
            self,
            train=tuple(move(t) for t in self.train),
            test=tuple(move(t) for t in self.test),
            input_size=(width, height),
        )

    def to_dict(self) -> dict:
        """JSON-ready (written next to an exported split)."""
        return {
            "concept_names": list(self.concept_names),
            "class_concepts": [sorted(s) for s in self.class_concepts],
            "image_size": self.image_size,
            "box_size": list(self.input_size),
            "box_format": "x0, y0, x1, y1 in pixel coordinates (pixel i spans [i, i+1))",
            "train": [t.to_dict() for t in self.train],
            "test": [t.to_dict() for t in self.test],
        }


# -- the concept pool and the classes ------------------------------------------------------------


def concept_pool(config: ConceptsConfig) -> tuple[Concept, ...]:
    """`pool_size` distinct concepts in rounds: concept i has shape i mod S, and in round
    r = i // S the colours are shifted by 3r and the texture is r mod T. So shapes and colours
    are used evenly and (while the pool is at most S*C) no shape-colour pair repeats: neither
    the shape nor the colour alone names a concept. Depends only on the vocabulary, not the seed,
    so concept names stay stable across seeds."""
    shapes, colors, textures = config.shapes, config.colors, config.textures
    taken: set[tuple[int, int, int]] = set()
    pool = []
    for i in range(config.pool_size):
        r = i // len(shapes)
        s, c, t = i % len(shapes), (i + 3 * r) % len(colors), r % len(textures)
        # Past S*C concepts a triple can repeat: move to the next free texture, then colour.
        for dc, dt in itertools.product(range(len(colors)), range(len(textures))):
            candidate = (s, (c + dc) % len(colors), (t + dt) % len(textures))
            if candidate not in taken:
                break
        else:  # every colour and texture of this shape is used: take any free triple
            candidate = next(
                x
                for x in itertools.product(
                    range(len(shapes)), range(len(colors)), range(len(textures))
                )
                if x not in taken
            )
        taken.add(candidate)
        pool.append(Concept(shapes[candidate[0]], colors[candidate[1]], textures[candidate[2]]))
    return tuple(pool)


def class_concept_sets(config: ConceptsConfig, seed: int) -> tuple[frozenset[int], ...]:
    """`num_classes` distinct sets of `concepts_per_class` concept ids.

    With probability `class_overlap` a new class copies an existing one and swaps one or two
    concepts (the rarely used ones preferred), otherwise it takes the least used concepts, so
    classes share most parts yet every pool concept gets used when C*k >= pool size.
    """
    k, pool, count = config.concepts_per_class, config.pool_size, config.num_classes
    rng = np.random.default_rng([seed, _CLASS_STREAM])
    usage = np.zeros(pool)

    def least_used(candidates: Sequence[int], m: int) -> list[int]:
        candidates = np.asarray(candidates)
        order = np.argsort(usage[candidates] + rng.random(len(candidates)) * 0.5, kind="stable")
        return candidates[order[:m]].tolist()

    sets: list[frozenset[int]] = []
    attempts = 0
    while len(sets) < count and attempts < 100 * count:
        attempts += 1
        if sets and k < pool and rng.random() < config.class_overlap:
            base = sorted(sets[int(rng.integers(len(sets)))])
            swaps = min(int(rng.integers(1, 3)), k, pool - k)
            kept = rng.choice(base, k - swaps, replace=False).tolist()
            new = kept + least_used([c for c in range(pool) if c not in base], swaps)
        else:
            new = least_used(range(pool), k)
        candidate = frozenset(new)
        if candidate not in sets:
            sets.append(candidate)
            usage[list(candidate)] += 1
    if (
        len(sets) < count
    ):  # a crowded space (C close to C(pool, k)): take unused sets in random order
        rest = [
            frozenset(c) for c in itertools.combinations(range(pool), k) if frozenset(c) not in sets
        ]
        for i in rng.permutation(len(rest))[: count - len(sets)]:
            sets.append(rest[i])
    return tuple(sets)


def allowed_distractors(
    class_sets: Sequence[frozenset[int]], pool: int
) -> tuple[tuple[int, ...], ...]:
    """Per class, the pool concepts that may appear as a distractor: those that do not complete
    another class's set (else the image would show two classes in full, an ambiguous label)."""
    out = []
    for c, own in enumerate(class_sets):
        ok = []
        for x in range(pool):
            if x in own:
                continue
            shown = own | {x}
            if not any(other <= shown for d, other in enumerate(class_sets) if d != c):
                ok.append(x)
        out.append(tuple(ok))
    return tuple(out)


# -- one scene -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """How one concept is drawn, plus its ground truth."""

    concept: int
    gain: float  #: brightness factor of the concept's colour
    distractor: bool
    mask: np.ndarray  #: [size, size] bool: the shape's pixels
    box: tuple[int, int, int, int]  #: tight box of `mask`, (x0, y0, x1, y1), x1 and y1 exclusive
    visible: bool


@dataclass(frozen=True)
class Scene:
    """Everything `render` needs besides the random texture of background and clutter."""

    split: str
    index: int
    label: int
    placements: tuple[Placement, ...]  # in drawing order
    occluder: tuple[float, float, float, float] | None
    occluder_color: tuple[int, int, int] | None

    def truth(self) -> ImageTruth:
        instances = sorted(
            (ConceptInstance(p.concept, p.box, p.visible, p.distractor) for p in self.placements),
            key=lambda i: i.concept_id,
        )
        return ImageTruth(self.label, tuple(instances))


class ConceptGenerator:
    """Makes the images of one known-concept dataset: `layout(split, index)` then `render(scene)`."""

    def __init__(self, config: ConceptsConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.concepts = concept_pool(config)
        self.class_concepts = class_concept_sets(config, seed)
        self.distractors = allowed_distractors(self.class_concepts, config.pool_size)
        self.textures = TexturePatterns(config.image_size)
        self.colors = np.array([COLOR_RGB[c.color] for c in self.concepts], dtype=np.float32)

    @property
    def concept_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.concepts)

    @property
    def class_names(self) -> list[str]:
        width = len(str(self.config.num_classes - 1))
        return [f"class {c:0{width}d}" for c in range(self.config.num_classes)]

    def split_size(self, split: str) -> int:
        return self.config.train_size if split == "train" else self.config.test_size

    def label(self, index: int) -> int:
        """Classes take turns, so every split is balanced."""
        return index % self.config.num_classes

    def _rng(self, split: str, index: int, stream: int) -> np.random.Generator:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.random.default_rng([self.seed, _SPLIT_STREAM[split], index, stream])

    def layout(self, split: str, index: int) -> Scene:
        """What image `index` of `split` shows and where: deterministic, no pixels drawn."""
        cfg = self.config
        size = cfg.image_size
        rng = self._rng(split, index, 0)
        label = self.label(index)
        own = sorted(self.class_concepts[label])
        distractor = None
        if self.distractors[label] and rng.random() < cfg.distractor_prob:
            distractor = int(rng.choice(self.distractors[label]))
        shown = own + ([distractor] if distractor is not None else [])
        order = [shown[i] for i in rng.permutation(len(shown))]

        boxes: list[tuple[float, float, float, float]] = []
        geometry = []
        for concept in order:
            radius = rng.uniform(*cfg.scale_range) * size / 2
            best, best_overlap = None, math.inf
            for _ in range(30):
                cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
                box = (cx - radius, cy - radius, cx + radius, cy + radius)
                overlap = max((_iou(box, other) for other in boxes), default=0.0)
                if overlap < best_overlap:
                    best, best_overlap = (cx, cy, box), overlap
                if overlap <= cfg.max_overlap:
                    break
            cx, cy, box = best
            boxes.append(box)
            angle = rng.uniform(-cfg.max_rotation, cfg.max_rotation)
            gain = rng.uniform(0.85, 1.08)
            geometry.append((concept, cx, cy, radius, angle, gain))

        occluder = occluder_color = None
        if rng.random() < cfg.occlusion_prob:
            occluder = self._occluder(rng, own, distractor, geometry)
            if occluder is not None:
                occluder_color = muted_color(rng)

        masks = [
            shape_mask(self.concepts[c].shape, size, cx, cy, r, a)
            for c, cx, cy, r, a, _ in geometry
        ]
        covered = np.zeros((size, size), dtype=bool)
        if occluder is not None:
            x0, y0, x1, y1 = (round(v) for v in occluder)
            covered[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        placements = []
        for (concept, _, _, _, _, gain), mask in zip(reversed(geometry), reversed(masks)):
            area = mask.sum()
            seen = (mask & ~covered).sum() / area if area else 0.0
            covered |= mask
            visible = bool(seen >= cfg.visible_threshold)
            placements.append(
                Placement(concept, gain, concept == distractor, mask, mask_box(mask), visible)
            )
        return Scene(split, index, label, tuple(reversed(placements)), occluder, occluder_color)

    def _occluder(self, rng, own, distractor, geometry) -> tuple[float, float, float, float] | None:
        """A rectangle over one side of one class concept, covering a random share of its box.

        The target is never a concept whose loss, with the distractor present, would leave
        exactly another class's concept set visible."""
        targets = []
        for concept in own:
            shown = frozenset(own) - {concept} | ({distractor} if distractor is not None else set())
            if shown not in self.class_concepts:
                targets.append(concept)
        if not targets:
            return None
        target = int(rng.choice(targets))
        _, cx, cy, radius, _, _ = next(g for g in geometry if g[0] == target)
        share = rng.uniform(*self.config.occlusion_range)
        reach = 2 * radius * share
        beyond = rng.uniform(0.3, 1.0) * radius
        margin = rng.uniform(0.1, 0.4) * radius
        x0, y0, x1, y1 = cx - radius, cy - radius, cx + radius, cy + radius
        side = int(rng.integers(4))
        if side == 0:  # from the left
            return (x0 - beyond, y0 - margin, x0 + reach, y1 + margin)
        if side == 1:  # from the right
            return (x1 - reach, y0 - margin, x1 + beyond, y1 + margin)
        if side == 2:  # from the top
            return (x0 - margin, y0 - beyond, x1 + margin, y0 + reach)
        return (x0 - margin, y1 - reach, x1 + margin, y1 + beyond)

    def render(self, scene: Scene) -> Image.Image:
        """The RGB image of a scene; background and clutter come from the scene's own seed."""
        cfg = self.config
        size = cfg.image_size
        rng = self._rng(scene.split, scene.index, 1)
        canvas = Image.fromarray(background(rng, size).astype(np.uint8), "RGB")
        low, high = cfg.clutter_range
        draw_clutter(canvas, rng, int(rng.integers(low, high + 1)))
        pixels = np.asarray(canvas).astype(np.int16)  # int16: room for the noise below
        for p in scene.placements:
            x0, y0, x1, y1 = p.box  # work inside the box: a fraction of the image's pixels
            region, shape = pixels[y0:y1, x0:x1], p.mask[y0:y1, x0:x1]
            region[shape] = np.clip(np.round(self.colors[p.concept] * p.gain), 0, 255)
            ink = self.textures.ink(self.concepts[p.concept].texture)
            if ink is not None:
                region[shape & ink[y0:y1, x0:x1]] = TEXTURE_INK
        if scene.occluder is not None:
            x0, y0, x1, y1 = (round(v) for v in scene.occluder)
            pixels[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = scene.occluder_color
        # Sensor-like noise, so no concept has one exact colour value (uniform: cheaper than normal).
        pixels += rng.integers(-9, 10, pixels.shape, dtype=np.int16)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    def image(self, split: str, index: int) -> Image.Image:
        return self.render(self.layout(split, index))

    def truth(self, split: str, index: int) -> ImageTruth:
        return self.layout(split, index).truth()


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# -- the dataset -----------------------------------------------------------------------------------


class ConceptDataset(ImageDataset):
    """One split of the known-concept data, generated on the fly; `truth(i)` is image i's ground truth."""

    def __init__(
        self,
        generator: ConceptGenerator,
        split: str,
        transform: Any = None,
        size: int | None = None,
    ):
        indices = list(range(generator.split_size(split) if size is None else size))
        super().__init__(
            indices, [generator.label(i) for i in indices], generator.class_names, split, transform
        )
        self.generator = generator

    def load(self, sample: int) -> Image.Image:
        return self.generator.image(self.split, sample)

    def truth(self, index: int) -> ImageTruth:
        return self.generator.truth(self.split, self.samples[index])


def ground_truth(train: ConceptDataset, test: ConceptDataset) -> ConceptGroundTruth:
    """The ground truth aligned with the two datasets as they are (subsets included)."""
    gen = train.generator
    return ConceptGroundTruth(
        concept_names=gen.concept_names,
        class_concepts=gen.class_concepts,
        image_size=gen.config.image_size,
        train=tuple(train.truth(i) for i in range(len(train))),
        test=tuple(test.truth(i) for i in range(len(test))),
    )


def check_files(cfg: DataConfig) -> None:
    """Nothing to check on disk: the images are generated."""


def open_splits(cfg: DataConfig) -> DataSplits:
    generator = ConceptGenerator(cfg.concepts, cfg.seed)
    train, test = ConceptDataset(generator, "train"), ConceptDataset(generator, "test")
    # the true class → concept table is this dataset's class attribute table (Structural Grounding)
    attributes = np.zeros((len(generator.class_names), len(generator.concept_names)))
    for c, concepts in enumerate(generator.class_concepts):
        attributes[c, sorted(concepts)] = 1.0
    calibration = None
    if cfg.calibration is not None:  # generated like the others, from its own random stream
        calibration = ConceptDataset(generator, "calibration", size=cfg.calibration)
    return DataSplits(
        "concepts",
        train,
        test,
        generator.class_names,
        class_attributes=attributes,
        attribute_names=list(generator.concept_names),
        calibration=calibration,
        calibration_source=None if calibration is None else "generated (a split of its own)",
    )
