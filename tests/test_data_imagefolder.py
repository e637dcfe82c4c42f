"""ImageFolder trees: ROOT/train/<class>/* and ROOT/test/<class>/*."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import DataConfig, DataConfigError, build_datasets, check_dataset_files


def write_image(path: Path, color: tuple[int, int, int], mode: str = "RGB", size=(20, 14)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).convert(mode).save(path)


def make_tree(root: Path) -> None:
    write_image(root / "train" / "b_sparrow" / "1.png", (200, 0, 0))
    write_image(root / "train" / "b_sparrow" / "2.JPG", (190, 10, 0))
    write_image(root / "train" / "b_sparrow" / "nested" / "3.png", (180, 0, 0), mode="L")
    write_image(root / "train" / "a_finch" / "1.png", (0, 200, 0))
    (root / "train" / "a_finch" / "notes.txt").write_text("not an image")
    (root / "train" / "a_finch" / ".hidden.png").write_bytes(b"")
    write_image(root / "test" / "a_finch" / "x.webp", (0, 180, 0))
    write_image(root / "test" / "b_sparrow" / "y.png", (170, 0, 0), mode="RGBA")


def config(root: Path, **extra) -> DataConfig:
    return DataConfig.from_dict({"name": "imagefolder", "root": str(root), **extra}, "train.yaml")


def test_reads_both_splits_with_sorted_classes(tmp_path):
    make_tree(tmp_path)
    splits = build_datasets(config(tmp_path))
    assert splits.class_names == ["a_finch", "b_sparrow"]
    assert splits.train.labels.tolist() == [0, 1, 1, 1] and splits.test.labels.tolist() == [0, 1]
    assert [p.path.name for p in splits.train.samples] == ["1.png", "1.png", "2.JPG", "3.png"]
    for dataset in (splits.train, splits.test):
        for i in range(len(dataset)):
            image, label = dataset[i]
            assert image.mode == "RGB" and image.size == (20, 14)
            red, green, blue = np.asarray(image)[0, 0].astype(int)
            if dataset.samples[i].path.name == "3.png":  # the greyscale file: grey RGB
                assert red == green == blue == 54
            else:
                assert (label == 1) == (red > green)


def test_layout_errors_name_the_folders(tmp_path):
    make_tree(tmp_path)
    write_image(tmp_path / "train" / "c_wren" / "1.png", (0, 0, 200))
    (tmp_path / "test" / "d_tit").mkdir()
    with pytest.raises(DataConfigError) as info:
        check_dataset_files(config(tmp_path))
    message = str(info.value)
    assert (
        f"only in {tmp_path / 'train'}: ['c_wren']" in message
        and f"only in {tmp_path / 'test'}: ['d_tit']" in message
    )

    (tmp_path / "test" / "d_tit").rmdir()
    (tmp_path / "test" / "c_wren").mkdir()
    with pytest.raises(
        DataConfigError, match=f"{tmp_path / 'test' / 'c_wren'}: class folder holds no images"
    ):
        build_datasets(config(tmp_path))


def test_missing_split_and_unreadable_image(tmp_path):
    write_image(tmp_path / "train" / "a" / "1.png", (1, 2, 3))
    with pytest.raises(
        DataConfigError,
        match=f"{tmp_path / 'test'}: does not exist; expected one subfolder per class",
    ):
        build_datasets(config(tmp_path))
    (tmp_path / "test").mkdir()
    with pytest.raises(DataConfigError, match=f"{tmp_path / 'test'}: holds no class folders"):
        build_datasets(config(tmp_path))
    bad = tmp_path / "test" / "a" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8 truncated")
    splits = build_datasets(config(tmp_path))
    with pytest.raises(DataConfigError, match=f"{bad}: "):
        splits.test[0]
