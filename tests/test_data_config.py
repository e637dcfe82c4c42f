"""The data section of the training config: strict parsing, disk checks, stratified subsets."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import (
    ConceptsConfig,
    DataConfig,
    DataConfigError,
    build_datasets,
    check_dataset_files,
    stratified_indices,
)


def error(data, **kwargs) -> str:
    with pytest.raises(DataConfigError) as info:
        DataConfig.from_dict(data, "train.yaml", **kwargs)
    return str(info.value)


def test_defaults_and_round_trip(tmp_path):
    cfg = DataConfig.from_dict({"name": "concepts"}, "train.yaml")
    assert cfg.concepts == ConceptsConfig()
    assert (cfg.train_subset, cfg.test_subset, cfg.seed) == (None, None, 0)
    full = {
        "name": "concepts",
        "concepts": {
            "num_classes": 6,
            "concepts_per_class": 3,
            "pool_size": 8,
            "image_size": 48,
            "textures": ["solid"],
        },
        "train_subset": 30,
        "seed": 3,
    }
    cfg = DataConfig.from_dict(full, "train.yaml")
    assert cfg.concepts.textures == ("solid",) and cfg.concepts.image_size == 48
    assert DataConfig.from_dict(cfg.to_dict(), "again") == cfg
    cub = DataConfig.from_dict(
        {"name": "cub200", "root": "data/cub", "crop_to_bbox": True}, "x", base_dir=tmp_path
    )
    assert cub.root == tmp_path / "data" / "cub" and cub.crop_to_bbox
    assert DataConfig.from_dict(cub.to_dict(), "again") == cub


def test_errors_name_the_field():
    assert issubclass(DataConfigError, ValueError)
    assert "train.yaml: unknown field(s) ['trian_subset'] in 'data'" in error(
        {"name": "concepts", "trian_subset": 3}
    )
    assert "'data.name' must be one of" in error({"name": "cifar"})
    assert "required field 'data.name' is missing" in error({})
    assert "'data.train_subset' must be an integer, got str '100'" in error(
        {"name": "concepts", "train_subset": "100"}
    )
    assert "'data.train_subset' must be at least 1" in error(
        {"name": "concepts", "train_subset": 0}
    )
    assert "'data.seed' must be an integer" in error({"name": "concepts", "seed": 1.5})
    assert "'data.crop_to_bbox' applies only to" in error(
        {"name": "imagefolder", "root": "x", "crop_to_bbox": True}
    )
    assert "'data.concepts' applies only to dataset 'concepts'" in error(
        {"name": "imagefolder", "root": "x", "concepts": {}}
    )
    assert "'data.root' is not used" in error({"name": "concepts", "root": "x"})
    assert "unknown field(s) ['colours'] in 'data.concepts'" in error(
        {"name": "concepts", "concepts": {"colours": []}}
    )
    assert "train.yaml: field 'data' must be a mapping, got list" in error(["concepts"])


def test_concept_options_are_checked():
    def concepts(**options) -> str:
        return error({"name": "concepts", "concepts": options})

    assert "'data.concepts.shapes' holds unknown name(s) ['blob']" in concepts(
        shapes=["circle", "blob"]
    )
    assert "'data.concepts.colors' holds duplicates" in concepts(colors=["red", "red"])
    assert "'data.concepts.textures' must be a non-empty list" in concepts(textures=[])
    assert "'data.concepts.pool_size' is 20, but only 16 distinct concepts" in concepts(
        shapes=["circle", "square", "star", "ring"],
        colors=["red", "blue"],
        textures=["solid", "striped"],
        pool_size=20,
    )
    assert "'data.concepts.num_classes' is 11, but only C(5, 2) = 10" in concepts(
        num_classes=11, pool_size=5, concepts_per_class=2
    )
    assert "'data.concepts.concepts_per_class' is 9, more than pool_size 8" in concepts(
        pool_size=8, concepts_per_class=9
    )
    assert "'data.concepts.distractor_prob' must be in [0, 1], got 1.5" in concepts(
        distractor_prob=1.5
    )
    assert "'data.concepts.scale_range' must be [min, max]" in concepts(scale_range=[0.3, 0.1])
    assert "'data.concepts.clutter_range' must be [min, max]" in concepts(clutter_range=[3])
    assert "'data.concepts.image_size' must be at least 32" in concepts(image_size=16)


def test_paths_are_checked_before_training(tmp_path):
    assert "train.yaml: field 'data.root' is required for dataset 'imagefolder'" in error(
        {"name": "imagefolder"}
    )
    assert DataConfig.from_dict({"name": "fashion_mnist"}, "x").dataset_root.name == "fashion-mnist"
    missing = tmp_path / "nowhere"
    for name in ("imagefolder", "cub200", "stanford_cars", "fashion_mnist"):
        cfg = DataConfig.from_dict({"name": name, "root": str(missing)}, "train.yaml")
        with pytest.raises(DataConfigError, match=f"{missing}: does not exist"):
            check_dataset_files(cfg)
        with pytest.raises(DataConfigError, match=f"{missing}: does not exist"):
            build_datasets(cfg)
    check_dataset_files(
        DataConfig.from_dict({"name": "concepts"}, "train.yaml")
    )  # nothing on disk to check


def test_stratified_indices_keep_class_shares():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    keep = stratified_indices(labels, 40, 4, seed=0, field="data.train_subset")
    assert len(keep) == 40 and len(np.unique(keep)) == 40
    assert np.all(np.diff(keep) > 0), "sorted, so the subset keeps the dataset's order"
    assert np.bincount(labels[keep], minlength=4).tolist() == [20, 10, 6, 4]
    assert np.array_equal(keep, stratified_indices(labels, 40, 4, seed=0, field="f"))
    assert not np.array_equal(keep, stratified_indices(labels, 40, 4, seed=1, field="f"))
    # rare classes keep one image; the quotas still add up
    skewed = np.repeat(np.arange(3), [500, 3, 1])
    counts = np.bincount(skewed[stratified_indices(skewed, 10, 3, 0, "f")], minlength=3)
    assert counts.sum() == 10 and counts.min() >= 1
    assert np.array_equal(stratified_indices(labels, 200, 4, 0, "f"), np.arange(200))
    with pytest.raises(
        DataConfigError, match="'data.test_subset' is 201, but the split has only 200 images"
    ):
        stratified_indices(labels, 201, 4, 0, "data.test_subset")
    with pytest.raises(DataConfigError, match="'data.train_subset' is 3, fewer than the 4 classes"):
        stratified_indices(labels, 3, 4, 0, "data.train_subset")


def test_subsets_apply_to_built_splits():
    data = {
        "name": "concepts",
        "concepts": {
            "num_classes": 4,
            "concepts_per_class": 2,
            "pool_size": 6,
            "train_size": 40,
            "test_size": 20,
        },
        "train_subset": 12,
        "test_subset": 8,
    }
    splits = build_datasets(DataConfig.from_dict(data, "train.yaml"))
    assert len(splits.train) == 12 and len(splits.test) == 8
    assert splits.train.class_counts().tolist() == [3, 3, 3, 3]
    assert splits.test.class_counts().tolist() == [2, 2, 2, 2]
    with pytest.raises(
        DataConfigError, match="'data.train_subset' is 50, but the split has only 40"
    ):
        build_datasets(DataConfig.from_dict({**data, "train_subset": 50}, "train.yaml"))
