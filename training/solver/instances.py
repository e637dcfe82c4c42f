"""Synthetic assignment instances with the structure of a fine-grained CNN (the benchmark's input).

We cannot run a ResNet-50 on CUB here, so the benchmark simulates what the pipeline sees: the
post-ReLU feature maps of a backbone on a labelled training set, pooled to features, and turns
them into A, R, b with `training.statistics.StatisticsAccumulator`, exactly as the pipeline does.

The simulation (all of it deterministic from `seed`):

- **Latent parts** ("red wing", "striped crown", ...). Classes come in groups (genera); a part
  has a home group and is shown by each class of that group with probability `in_group_share`
  and by any other class with probability `out_group_rate / C`, so parts are shared among
  related classes, as the attributes of CUB's birds are.
- **Features** read one main part (and with probability `second_part_prob` a second one at a
  lower weight), with a log-normal gain and a negative offset, so that they are sparse after
  the ReLU. Since there are more features than parts, several features read the same part:
  that is the redundancy R measures. A share `dead_fraction` never fires (dead ReLU channels)
  and `weak_fraction` respond only to noise.
- **Images**: an image of class y shows each of y's parts with probability `visibility`, at a
  log-normal strength, plus clutter (each absent part with probability `clutter_rate` at half
  strength). A feature's map is its activation times a Gaussian bump at its main part's position
  in that image (part positions are interior, a `border_part_fraction` of parts lives on the
  border, like background), of a per-feature width; plus map noise; then the ReLU. The pooled
  feature is the mean of its map, as in the backbone.

With the defaults, the largest |A| per class, the spread of R and the share of border-peaking
features look like the statistics of a ResNet on CUB: each class has a handful of features
with normalised correlation 0.3-0.8 and a long tail near 0; most R entries are small, and
the features reading the same or sibling parts give a tail of R close to 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from training.statistics import AssignmentStatistics, StatisticsAccumulator


@dataclass(frozen=True)
class InstanceSpec:
    """Parameters of a simulated backbone + training set (see the module docstring)."""

    num_features: int
    num_classes: int
    samples_per_class: int = 30  #: CUB has ~30 training images per class
    num_parts: int = 0  #: latent parts; 0 = max(C, F // 4)
    group_size: int = 8  #: classes per group (genus)
    in_group_share: float = 0.35
    out_group_rate: float = 2.0
    second_part_prob: float = 0.5
    dead_fraction: float = 0.05
    weak_fraction: float = 0.15
    visibility: float = 0.8
    clutter_rate: float = 0.02
    border_part_fraction: float = 0.1
    activation_noise: float = 0.3
    map_noise: float = 0.05
    map_size: int = 7
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_features < 1 or self.num_classes < 2:
            raise ValueError(
                f"num_features must be >= 1 and num_classes >= 2, got {self.num_features}, {self.num_classes}"
            )
        if self.samples_per_class < 2:
            raise ValueError(f"samples_per_class must be >= 2, got {self.samples_per_class}")
        if self.map_size < 3:
            raise ValueError(
                f"map_size must be >= 3 (a border and an interior), got {self.map_size}"
            )
        for name in (
            "in_group_share",
            "second_part_prob",
            "dead_fraction",
            "weak_fraction",
            "visibility",
            "clutter_rate",
            "border_part_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.dead_fraction + self.weak_fraction > 1.0:
            raise ValueError("dead_fraction + weak_fraction must be at most 1")

    @property
    def parts(self) -> int:
        return self.num_parts or max(self.num_classes, self.num_features // 4)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _World:
    """The fixed part of the simulation: who shows which part, which feature reads which."""

    presence: np.ndarray  #: [C, P] strength of part p in class c (0 = absent)
    part_center: np.ndarray  #: [P, 2] mean (row, col) of each part in the map
    main_part: np.ndarray  #: [F] the part each feature is centred on
    reads: np.ndarray  #: [F, P] weight of each part in each feature
    gain: np.ndarray  #: [F]
    offset: np.ndarray  #: [F] (negative: sparse activations after the ReLU)
    width: np.ndarray  #: [F] spatial width of the feature's bump
    alive: np.ndarray  #: [F] False for dead channels


def _make_world(spec: InstanceSpec, rng: np.random.Generator) -> _World:
    F, C, P = spec.num_features, spec.num_classes, spec.parts
    groups = np.arange(C) // spec.group_size
    num_groups = int(groups.max()) + 1
    home = rng.integers(0, num_groups, P)
    shows = (groups[:, None] == home[None, :]) & (rng.random((C, P)) < spec.in_group_share)
    shows |= rng.random((C, P)) < spec.out_group_rate / C
    # every part is shown by at least one class of its home group
    for p in np.flatnonzero(~shows.any(axis=0)):
        members = np.flatnonzero(groups == home[p])
        shows[rng.choice(members), p] = True
    presence = np.where(shows, rng.lognormal(0.0, 0.3, (C, P)), 0.0)

    m = spec.map_size
    part_center = rng.uniform(1.0, m - 2.0, (P, 2))
    on_border = rng.random(P) < spec.border_part_fraction
    side = rng.integers(0, 4, P)
    along = rng.uniform(0.0, m - 1.0, P)
    border_pos = np.stack(
        [
            np.where(side == 0, 0.0, np.where(side == 1, m - 1.0, along)),
            np.where(side == 2, 0.0, np.where(side == 3, m - 1.0, along)),
        ],
        axis=1,
    )
    part_center[on_border] = border_pos[on_border]

    kind = rng.random(F)
    dead = kind < spec.dead_fraction
    weak = (kind >= spec.dead_fraction) & (kind < spec.dead_fraction + spec.weak_fraction)
    main_part = rng.integers(0, P, F)
    reads = np.zeros((F, P))
    reads[np.arange(F), main_part] = 1.0
    second = rng.random(F) < spec.second_part_prob
    other = rng.integers(0, P, F)
    reads[np.flatnonzero(second), other[second]] += rng.uniform(0.2, 0.8, int(second.sum()))
    reads[weak] = 0.0
    return _World(
        presence=presence,
        part_center=part_center,
        main_part=main_part,
        reads=reads,
        gain=rng.lognormal(0.0, 0.3, F),
        offset=np.where(weak, rng.uniform(0.0, 0.3, F), -rng.uniform(0.1, 0.5, F)),
        width=rng.uniform(0.6, 2.0, F),
        alive=~dead,
    )


def _simulate_batch(
    spec: InstanceSpec, world: _World, labels: np.ndarray, rng: np.random.Generator
):
    """Feature maps [B, F, m, m] (post-ReLU, float32) of a batch of images with these labels."""
    B, P, m = len(labels), spec.parts, spec.map_size
    presence = world.presence[labels]  # [B, P]
    visible = rng.random((B, P)) < spec.visibility
    strength = presence * visible * rng.lognormal(0.0, 0.3, (B, P))
    clutter = (presence == 0) & (rng.random((B, P)) < spec.clutter_rate)
    strength += 0.5 * clutter
    drive = strength @ world.reads.T  # [B, F]
    activation = (
        world.gain * drive + world.offset + spec.activation_noise * rng.standard_normal(drive.shape)
    )

    position = world.part_center[None] + 0.7 * rng.standard_normal((B, P, 2))
    position = np.clip(position, 0.0, m - 1.0)[:, world.main_part]  # [B, F, 2]
    grid = np.arange(m, dtype=np.float32)
    d_row = (grid[None, None, :] - position[..., 0:1].astype(np.float32)) ** 2  # [B, F, m]
    d_col = (grid[None, None, :] - position[..., 1:2].astype(np.float32)) ** 2
    inv = (1.0 / (2.0 * world.width**2)).astype(np.float32)[None, :, None]
    bump = np.exp(-d_row * inv)[..., :, None] * np.exp(-d_col * inv)[..., None, :]  # [B, F, m, m]
    maps = activation.astype(np.float32)[..., None, None] * bump
    maps += spec.map_noise * rng.standard_normal(maps.shape, dtype=np.float32)
    np.maximum(maps, 0.0, out=maps)
    maps[:, ~world.alive] = 0.0
    return maps


def generate_statistics(spec: InstanceSpec, progress: bool = False) -> AssignmentStatistics:
    """Simulate the training set batch by batch and return A, R, b, μ, σ as the pipeline would."""
    rng = np.random.default_rng(spec.seed)
    world = _make_world(spec, rng)
    labels = np.repeat(np.arange(spec.num_classes), spec.samples_per_class)
    rng.shuffle(labels)
    acc = StatisticsAccumulator(spec.num_features, spec.num_classes)
    batches = range(0, len(labels), spec.batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(
            batches,
            desc="simulating activations",
            unit="batch",
            leave=False,
            total=math.ceil(len(labels) / spec.batch_size),
        )
    for start in batches:
        y = labels[start : start + spec.batch_size]
        maps = _simulate_batch(spec, world, y, rng)
        acc.update(maps.mean(axis=(2, 3)), y, maps)
    return acc.finalize()
