"""Fashion-MNIST from idx files: tiny files written here, and the real Debian files when installed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training.data import DataConfig, DataConfigError, build_datasets, check_dataset_files
from training.data.fashion_mnist import CLASS_NAMES, read_idx

REAL = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, compress: bool
) -> None:
    for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
        name = f"{prefix}-{kind}-idx{dims}-ubyte"
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / name).write_bytes(idx_bytes(array))


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    data = {
        "train": (rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10),
        "test": (rng.integers(0, 256, (10, 28, 28)), np.arange(10)[::-1].copy()),
    }
    write_split(tmp_path, "train", *data["train"], compress=True)
    write_split(tmp_path, "t10k", *data["test"], compress=False)  # plain idx files work too
    return tmp_path, data


def test_reads_tiny_idx_files(tiny):
    root, data = tiny
    splits = build_datasets(DataConfig.from_dict({"name": "fashion_mnist", "root": str(root)}, "t"))
    assert splits.class_names == CLASS_NAMES and len(CLASS_NAMES) == 10
    assert (len(splits.train), len(splits.test)) == (30, 10)
    for dataset, (pixels, labels) in ((splits.train, data["train"]), (splits.test, data["test"])):
        assert dataset.labels.tolist() == labels.tolist()
        image, label = dataset[7]
        assert image.mode == "RGB" and image.size == (28, 28) and label == labels[7]
        rgb = np.asarray(image)
        assert np.array_equal(rgb[:, :, 0], pixels[7]) and np.array_equal(
            rgb[:, :, 0], rgb[:, :, 2]
        )
    sub = build_datasets(
        DataConfig.from_dict({"name": "fashion_mnist", "root": str(root), "train_subset": 20}, "t")
    )
    assert sub.train.class_counts().tolist() == [2] * 10


def test_bad_files_are_named(tiny, tmp_path):
    root, _ = tiny
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(DataConfigError, match=f"{labels}: the header promises shape \\(10,\\)"):
        build_datasets(DataConfig.from_dict({"name": "fashion_mnist", "root": str(root)}, "t"))
    labels.write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(DataConfigError, match=f"{labels}: not an idx file"):
        read_idx(labels)
    broken = root / "broken.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataConfigError, match=f"{broken}: cannot be read"):
        read_idx(broken)
    labels.unlink()
    with pytest.raises(
        DataConfigError,
        match="missing t10k-labels-idx1-ubyte.gz .*apt-get install dataset-fashion-mnist",
    ):
        check_dataset_files(DataConfig.from_dict({"name": "fashion_mnist", "root": str(root)}, "t"))


def test_label_count_must_match_images(tmp_path):
    write_split(tmp_path, "train", np.zeros((4, 28, 28)), np.zeros(3), compress=True)
    write_split(tmp_path, "t10k", np.zeros((2, 28, 28)), np.zeros(2), compress=True)
    with pytest.raises(DataConfigError, match="3 labels for 4 images"):
        build_datasets(DataConfig.from_dict({"name": "fashion_mnist", "root": str(tmp_path)}, "t"))


@pytest.mark.skipif(
    not REAL.is_dir(), reason=f"{REAL} absent (apt-get install dataset-fashion-mnist)"
)
def test_real_debian_files():
    splits = build_datasets(
        DataConfig.from_dict({"name": "fashion_mnist"}, "t")
    )  # the default root
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    assert splits.train.class_counts().tolist() == [6000] * 10
    assert splits.test.class_counts().tolist() == [1000] * 10
    image, label = splits.test[0]
    assert (image.mode, image.size, CLASS_NAMES[label]) == ("RGB", (28, 28), "Ankle boot")
