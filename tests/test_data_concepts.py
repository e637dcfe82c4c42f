"""The known-concept dataset: determinism, class design, and ground truth that matches the pixels."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from qpm_zoo import PreprocessConfig
from training.data import (
    ConceptsConfig,
    DataConfig,
    build_datasets,
    eval_transform,
    train_transform,
)
from training.data.concept_drawing import COLOR_RGB
from training.data.concepts import ConceptGenerator, allowed_distractors, concept_pool

SMALL = ConceptsConfig(
    num_classes=8, concepts_per_class=3, pool_size=12, image_size=64, train_size=64, test_size=32
)


def generator(seed: int = 0, **changes) -> ConceptGenerator:
    return ConceptGenerator(SMALL.replace(**changes), seed)


def tiny_splits(train_size: int):
    concepts = {"num_classes": 4, "pool_size": 6, "concepts_per_class": 2, "test_size": 8}
    data = {"name": "concepts", "concepts": {**concepts, "train_size": train_size}}
    return build_datasets(DataConfig.from_dict(data, "t"))


def test_images_are_deterministic_from_seed_split_and_index():
    a, b = generator(0), generator(0)
    for split, index in (("train", 0), ("train", 17), ("test", 5)):
        assert np.array_equal(np.asarray(a.image(split, index)), np.asarray(b.image(split, index)))
        assert a.truth(split, index) == b.truth(split, index)
    first = np.asarray(a.image("train", 3))
    assert not np.array_equal(first, np.asarray(a.image("train", 4)))
    assert not np.array_equal(first, np.asarray(a.image("test", 3)))
    assert not np.array_equal(first, np.asarray(generator(1).image("train", 3)))
    assert a.image("train", 3).mode == "RGB" and a.image("train", 3).size == (64, 64)


def test_pool_spreads_shapes_colours_and_textures():
    pool = concept_pool(ConceptsConfig())  # 16 concepts over 8 shapes x 8 colours x 2 textures
    names = [c.name for c in pool]
    assert len(set(names)) == 16
    assert names[:2] == ["red circle", "green square"] and names[8] == "striped yellow circle"
    pairs = [(c.shape, c.color) for c in pool]
    assert len(set(pairs)) == 16, (
        "no shape-colour pair repeats: texture alone never separates two concepts"
    )
    for attribute in ("shape", "color"):
        counts = np.unique([getattr(c, attribute) for c in pool], return_counts=True)[1]
        assert counts.tolist() == [2] * 8, (
            f"every {attribute} is used twice, so it alone does not name a concept"
        )
    assert concept_pool(ConceptsConfig()) == pool, "the pool does not depend on the seed"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classes_are_unique_overlapping_sets_covering_the_pool(seed):
    gen = ConceptGenerator(ConceptsConfig(), seed)
    sets = gen.class_concepts
    assert len(sets) == 12 and len(set(sets)) == 12
    assert all(len(s) == 4 for s in sets)
    assert set().union(*sets) == set(range(16)), "every pool concept belongs to some class"
    closest = [min(len(s - t) for t in sets if t is not s) for s in sets]
    assert max(closest) <= 3 and np.mean(closest) <= 2, (
        "classes share parts with their nearest class"
    )


def test_crowded_class_space_still_gives_distinct_sets():
    gen = ConceptGenerator(SMALL.replace(num_classes=10, pool_size=5, concepts_per_class=2), 0)
    assert sorted(map(sorted, gen.class_concepts)) == [
        list(c) for c in itertools.combinations(range(5), 2)
    ]


def test_distractors_never_complete_another_class():
    sets = (frozenset({0, 1}), frozenset({0, 2}), frozenset({3, 4}))
    allowed = allowed_distractors(sets, 5)
    assert allowed[0] == (3, 4), "2 would complete class 1's set {0, 2}"
    assert allowed[1] == (3, 4)
    assert allowed[2] == (0, 1, 2)


def test_every_image_shows_its_class_concepts_once():
    gen = generator(0, distractor_prob=0.5, occlusion_prob=0.5)
    distractors = 0
    for index in range(200):
        truth = gen.truth("train", index)
        assert truth.label == index % 8
        ids = [i.concept_id for i in truth.instances]
        assert len(ids) == len(set(ids))
        own = gen.class_concepts[truth.label]
        assert own <= set(ids)
        extra = [i for i in truth.instances if i.distractor]
        assert {i.concept_id for i in extra} == set(ids) - own and len(extra) <= 1
        distractors += len(extra)
        shown = set(ids)
        assert not any(
            other <= shown for c, other in enumerate(gen.class_concepts) if c != truth.label
        )
        for inst in truth.instances:
            x0, y0, x1, y1 = inst.box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            side = max(x1 - x0, y1 - y0)
            assert 0.5 * 0.18 * 64 <= side <= 0.30 * 64 + 2
    assert 70 <= distractors <= 130, "about half of the images carry a distractor"


def close_to(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: float = 60.0) -> np.ndarray:
    return (
        np.linalg.norm(pixels.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1) < tolerance
    )


def test_boxes_hold_the_drawn_concepts_and_nothing_else_is_saturated():
    """Without clutter and occlusion, each box holds its concept's colour, and the colour appears
    nowhere outside the boxes of concepts that have it."""
    gen = generator(
        0, clutter_range=(0, 0), occlusion_prob=0.0, distractor_prob=0.5, textures=("solid",)
    )
    for index in range(40):
        truth = gen.truth("train", index)
        pixels = np.asarray(gen.image("train", index))
        for inst in truth.instances:
            color = COLOR_RGB[gen.concepts[inst.concept_id].color]
            x0, y0, x1, y1 = (int(v) for v in inst.box)
            inside = close_to(pixels[y0:y1, x0:x1], color)
            assert inside.mean() > 0.2, (
                f"image {index}: concept {inst.concept_id} not drawn in its box"
            )
            # the tight box touches the shape on all four sides
            assert inside[0].any() or inside[:, 0].any()
            assert inside[-1].any() or inside[:, -1].any()
        for color in {gen.concepts[i.concept_id].color for i in truth.instances}:
            outside = close_to(pixels, COLOR_RGB[color], 40.0)
            for inst in truth.instances:
                if gen.concepts[inst.concept_id].color == color:
                    x0, y0, x1, y1 = (int(v) for v in inst.box)
                    outside[y0:y1, x0:x1] = False
            assert outside.sum() <= 2, f"image {index}: {color} pixels outside the boxes"


def test_occlusion_hides_concepts():
    always = generator(0, occlusion_prob=1.0, occlusion_range=(0.95, 1.0), max_overlap=0.0)
    never = generator(0, occlusion_prob=0.0, max_overlap=0.0, scale_range=(0.15, 0.18))
    hidden = [sum(not i.visible for i in always.truth("train", n).instances) for n in range(60)]
    assert np.mean([h >= 1 for h in hidden]) > 0.9
    hidden_is_distractor = [
        i.distractor for n in range(60) for i in always.truth("train", n).instances if not i.visible
    ]
    assert sum(hidden_is_distractor) <= 0.1 * len(hidden_is_distractor), (
        "the occluder covers class concepts"
    )
    for n in range(60):
        assert all(i.visible for i in never.truth("train", n).instances)
    # an occluded concept's colour mostly disappears from its box
    for n in range(60):
        truth = always.truth("train", n)
        pixels = np.asarray(always.image("train", n))
        for inst in truth.instances:
            if not inst.visible:
                x0, y0, x1, y1 = (int(v) for v in inst.box)
                color = COLOR_RGB[always.concepts[inst.concept_id].color]
                assert close_to(pixels[y0:y1, x0:x1], color).mean() < 0.35


def test_build_gives_aligned_ground_truth_and_presence():
    data = {
        "name": "concepts",
        "seed": 4,
        "concepts": SMALL.to_dict() | {"textures": ["solid", "striped"]},
    }
    data["concepts"] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in data["concepts"].items()
    }
    splits = build_datasets(DataConfig.from_dict({**data, "train_subset": 24}, "t"))
    gt = splits.ground_truth
    gen = splits.train.generator
    assert gt.concept_names == gen.concept_names and gt.class_concepts == gen.class_concepts
    assert len(gt.train) == 24 and len(gt.test) == 32 and splits.class_names == gen.class_names
    for i in range(len(splits.train)):
        image, label = splits.train[i]
        assert gt.train[i].label == label == int(splits.train.labels[i])
        assert gt.train[i] == gen.truth("train", splits.train.samples[i])
        assert image.size == (64, 64)
    presence = gt.presence("test")
    assert presence.shape == (32, 12) and presence.dtype == bool
    for n, truth in enumerate(gt.test):
        assert set(np.flatnonzero(presence[n])) == {
            i.concept_id for i in truth.instances if i.visible
        }
    assert gt.presence("test", visible_only=False).sum() >= presence.sum()
    matrix = gt.class_concept_matrix()
    assert matrix.shape == (8, 12) and matrix.sum(axis=1).tolist() == [3] * 8
    assert gt.train[0].annotations() == [
        (i.concept_id, i.box, i.visible) for i in gt.train[0].instances
    ]


def test_boxes_follow_the_evaluation_crop():
    splits = tiny_splits(train_size=8)
    gt = splits.ground_truth
    same = PreprocessConfig(input_size=(3, 64, 64), crop_pct=1.0)
    assert gt.as_seen(same) is gt
    double = gt.as_seen(PreprocessConfig(input_size=(3, 128, 128), crop_pct=1.0))
    assert double.input_size == (128, 128)
    for a, b in zip(gt.test[0].instances, double.test[0].instances):
        assert b.box == tuple(2.0 * v for v in a.box)
    zoom = gt.as_seen(
        PreprocessConfig(input_size=(3, 64, 64), crop_pct=0.8)
    )  # resize to 80, crop 8 px each side
    for a, b in zip(gt.test[1].instances, zoom.test[1].instances):
        expected = tuple(min(max(v * 80 / 64 - 8, 0.0), 64.0) for v in a.box)
        assert b.box == pytest.approx(expected)


def test_datasets_work_in_a_dataloader_and_pickle():
    splits = tiny_splits(train_size=16)
    pre = PreprocessConfig(input_size=(3, 64, 64), crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)
    splits.train.transform = train_transform(pre, "light")
    x, y = next(iter(DataLoader(splits.train, batch_size=8, shuffle=True)))
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    copy = pickle.loads(pickle.dumps(splits.test))
    assert np.array_equal(np.asarray(copy.image(3)), np.asarray(splits.test.image(3)))
    splits.test.transform = eval_transform(pre)
    assert torch.equal(splits.test[2][0], eval_transform(pre)(splits.test.image(2)))
