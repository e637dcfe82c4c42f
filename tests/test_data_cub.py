"""CUB-200-2011 in its official layout: a tiny fake tree with 3 classes and 6 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import DataConfig, DataConfigError, build_datasets, check_dataset_files

CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
# id, class, is_train, (x, y, w, h), image size
IMAGES = [
    (1, 1, 1, (2.0, 3.0, 10.0, 8.0), (30, 20)),
    (2, 1, 0, (0.0, 0.0, 30.0, 20.0), (30, 20)),
    (3, 2, 1, (5.5, 4.2, 12.3, 9.1), (40, 24)),
    (4, 2, 0, (1.0, 1.0, 5.0, 5.0), (16, 16)),
    (5, 3, 1, (10.0, 2.0, 20.0, 16.0), (32, 32)),
    (6, 3, 0, (0.0, 8.0, 16.0, 8.0), (16, 16)),
]
ATTRIBUTES = 312


def make_cub(root: Path, attributes: bool = True) -> Path:
    base = root / "CUB_200_2011"
    (base / "images").mkdir(parents=True)
    lines = {
        name: [] for name in ("images", "image_class_labels", "train_test_split", "bounding_boxes")
    }
    for image_id, label, is_train, (x, y, w, h), size in IMAGES:
        rel = f"{CLASSES[label - 1]}/{CLASSES[label - 1].split('.')[1]}_{image_id:04d}.jpg"
        (base / "images" / rel).parent.mkdir(exist_ok=True)
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[..., 0] = label * 60  # the class in the red channel
        Image.fromarray(pixels).save(base / "images" / rel, quality=95)
        lines["images"].append(f"{image_id} {rel}")
        lines["image_class_labels"].append(f"{image_id} {label}")
        lines["train_test_split"].append(f"{image_id} {is_train}")
        lines["bounding_boxes"].append(f"{image_id} {x} {y} {w} {h}")
    for name, rows in lines.items():
        (base / f"{name}.txt").write_text("\n".join(rows) + "\n")
    (base / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    if attributes:
        (base / "attributes").mkdir()
        table = (
            np.arange(len(CLASSES) * ATTRIBUTES, dtype=float).reshape(len(CLASSES), ATTRIBUTES)
            % 101
        )
        np.savetxt(base / "attributes" / "class_attribute_labels_continuous.txt", table, fmt="%.6f")
        # the official archive puts attributes.txt next to CUB_200_2011/
        (root / "attributes.txt").write_text(
            "".join(f"{i + 1} has_part::value_{i + 1}\n" for i in range(ATTRIBUTES))
        )
    return base


def config(root: Path, **extra) -> DataConfig:
    return DataConfig.from_dict({"name": "cub200", "root": str(root), **extra}, "cub.yaml")


def test_official_layout_with_attributes(tmp_path):
    make_cub(tmp_path)
    splits = build_datasets(config(tmp_path))
    assert splits.class_names == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert splits.train.labels.tolist() == [0, 1, 2] and splits.test.labels.tolist() == [0, 1, 2]
    image, label = splits.train[1]
    assert image.mode == "RGB" and image.size == (40, 24) and label == 1
    assert abs(int(np.asarray(image)[0, 0, 0]) - 120) <= 3
    assert splits.class_attributes.shape == (3, ATTRIBUTES)
    assert splits.class_attributes[1, 0] == ATTRIBUTES % 101
    assert (
        splits.attribute_names[0] == "has_part::value_1"
        and len(splits.attribute_names) == ATTRIBUTES
    )
    # ROOT may also be the CUB_200_2011 folder itself
    again = build_datasets(config(tmp_path / "CUB_200_2011"))
    assert again.train.labels.tolist() == splits.train.labels.tolist()


def test_crop_to_ground_truth_boxes(tmp_path):
    make_cub(tmp_path, attributes=False)
    splits = build_datasets(config(tmp_path, crop_to_bbox=True))
    assert splits.class_attributes is None and splits.attribute_names is None
    sizes = [splits.train.image(i).size for i in range(3)] + [
        splits.test.image(i).size for i in range(3)
    ]
    # (x, y, w, h) → crop (floor x, floor y, ceil(x + w), ceil(y + h)), clipped to the image
    assert sizes == [(10, 8), (13, 10), (20, 16), (30, 20), (5, 5), (16, 8)]


def test_errors_name_files_and_lines(tmp_path):
    base = make_cub(tmp_path)
    missing = base / "images" / Path((base / "images.txt").read_text().split("\n")[2].split()[1])
    missing.unlink()
    with pytest.raises(
        DataConfigError, match=f"1 image file\\(s\\) listed in its metadata are missing: {missing}"
    ):
        build_datasets(config(tmp_path))

    (base / "bounding_boxes.txt").unlink()
    check_dataset_files(config(tmp_path))  # boxes are only needed for crops
    with pytest.raises(DataConfigError, match=f"{base / 'bounding_boxes.txt'}: does not exist"):
        check_dataset_files(config(tmp_path, crop_to_bbox=True))

    (base / "train_test_split.txt").write_text("1 1\n2 zero\n")
    with pytest.raises(
        DataConfigError, match=f"{base / 'train_test_split.txt'}: line 2 cannot be parsed"
    ):
        build_datasets(config(tmp_path))
    (base / "train_test_split.txt").write_text("1 1\n2 0\n")
    with pytest.raises(
        DataConfigError, match="train_test_split.txt: no entry for image id\\(s\\) \\[3, 4, 5, 6\\]"
    ):
        build_datasets(config(tmp_path))

    table = base / "attributes" / "class_attribute_labels_continuous.txt"
    np.savetxt(table, np.ones((2, ATTRIBUTES)))
    (base / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, t, _, _ in IMAGES))
    missing.parent.mkdir(exist_ok=True)
    Image.new("RGB", (40, 24)).save(missing)
    with pytest.raises(
        DataConfigError, match=f"{table}: has 2 rows, expected one per class \\(3\\)"
    ):
        build_datasets(config(tmp_path))
