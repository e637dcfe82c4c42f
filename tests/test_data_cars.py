"""Stanford Cars in its official layout, with .mat files written by scipy.io.savemat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from training.data import DataConfig, DataConfigError, build_datasets, check_dataset_files

CLASS_NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
FIELDS = [
    ("bbox_x1", "O"),
    ("bbox_y1", "O"),
    ("bbox_x2", "O"),
    ("bbox_y2", "O"),
    ("class", "O"),
    ("fname", "O"),
]
# fname, class (1-based), box (x1, y1, x2, y2) inclusive, image size
TRAIN = [
    ("00001.jpg", 1, (3, 2, 22, 11), (30, 20)),
    ("00002.jpg", 3, (0, 0, 15, 9), (16, 10)),
    ("00003.jpg", 2, (5, 5, 9, 9), (12, 12)),
]
TEST = [("00001.jpg", 2, (1, 1, 10, 6), (20, 10))]


def annotations(rows) -> np.ndarray:
    return np.array(
        [(x1, y1, x2, y2, label, name) for name, label, (x1, y1, x2, y2), _ in rows], dtype=FIELDS
    )


def make_cars(root: Path) -> Path:
    (root / "devkit").mkdir(parents=True)
    scipy.io.savemat(
        root / "devkit" / "cars_meta.mat", {"class_names": np.array(CLASS_NAMES, dtype=object)}
    )
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": annotations(TRAIN)})
    scipy.io.savemat(root / "cars_test_annos_withlabels.mat", {"annotations": annotations(TEST)})
    for split, rows in (("train", TRAIN), ("test", TEST)):
        (root / f"cars_{split}").mkdir()
        for name, label, _, size in rows:
            Image.new("RGB", size, (label * 70, 0, 0)).save(root / f"cars_{split}" / name)
    return root


def config(root: Path, **extra) -> DataConfig:
    return DataConfig.from_dict({"name": "stanford_cars", "root": str(root), **extra}, "cars.yaml")


def test_official_layout(tmp_path):
    make_cars(tmp_path)
    splits = build_datasets(config(tmp_path))
    assert splits.class_names == CLASS_NAMES
    assert splits.train.labels.tolist() == [0, 2, 1] and splits.test.labels.tolist() == [1]
    for i, (_, label, _, size) in enumerate(TRAIN):
        image, got = splits.train[i]
        assert (image.mode, image.size, got) == ("RGB", size, label - 1)
        assert abs(int(np.asarray(image)[0, 0, 0]) - label * 70) <= 3
    assert splits.test[0][0].size == (20, 10)  # a single test annotation is read too


def test_crop_and_torchvision_layout(tmp_path):
    make_cars(tmp_path / "stanford_cars")  # torchvision keeps the files one level down
    splits = build_datasets(config(tmp_path, crop_to_bbox=True))
    # inclusive corners: (x1, y1, x2, y2) → width x2 - x1 + 1, clipped to the image
    assert [splits.train.image(i).size for i in range(3)] == [(20, 10), (16, 10), (5, 5)]
    assert splits.test.image(0).size == (10, 6)


def test_errors_name_the_files(tmp_path):
    make_cars(tmp_path)
    labelled = tmp_path / "cars_test_annos_withlabels.mat"
    labelled.rename(tmp_path / "elsewhere.mat")
    with pytest.raises(
        DataConfigError, match=f"{labelled}: does not exist; expected the labelled test annotations"
    ):
        check_dataset_files(config(tmp_path))
    (tmp_path / "elsewhere.mat").rename(labelled)

    scipy.io.savemat(
        labelled, {"annotations": np.array([(1, 1, 4, 4, 9, "00001.jpg")], dtype=FIELDS)}
    )
    with pytest.raises(
        DataConfigError, match=f"{labelled}: annotation 0 \\(00001.jpg\\) has class 9, not in 1..3"
    ):
        build_datasets(config(tmp_path))

    no_class = np.array([(1, 1, 4, 4, "00001.jpg")], dtype=[f for f in FIELDS if f[0] != "class"])
    scipy.io.savemat(labelled, {"annotations": no_class})
    with pytest.raises(DataConfigError, match=r"annotations lack field\(s\) \['class'\]"):
        build_datasets(config(tmp_path))

    scipy.io.savemat(labelled, {"annos": annotations(TEST)})
    with pytest.raises(
        DataConfigError,
        match=f"{labelled}: has no variable 'annotations' \\(found \\['annos'\\]\\)",
    ):
        build_datasets(config(tmp_path))

    labelled.write_bytes(b"MATLAB 5.0 MAT-file, damaged")
    with pytest.raises(DataConfigError, match=f"{labelled}: cannot be read as a MATLAB file"):
        build_datasets(config(tmp_path))

    scipy.io.savemat(labelled, {"annotations": annotations(TEST)})
    (tmp_path / "cars_test" / "00001.jpg").unlink()
    with pytest.raises(
        DataConfigError,
        match="1 image file\\(s\\) listed in its metadata are missing: .*cars_test/00001.jpg",
    ):
        build_datasets(config(tmp_path))
