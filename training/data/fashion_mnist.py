"""Fashion-MNIST from its four idx files (gzipped or not), as RGB PIL images.

The Debian package `dataset-fashion-mnist` installs the gzipped files in
/usr/share/datasets/fashion-mnist; torchvision's loader refuses them (its checksums differ), so
the idx format is read here: 2 zero bytes, a type code, the number of dimensions, each
dimension as a big-endian uint32, then the values.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataConfigError
from .base import DataSplits, ImageDataset, require_dir
from .config import DataConfig

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# idx type code → numpy dtype (big-endian where it matters)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a numpy array; a DataConfigError names a bad file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataConfigError(f"{path}: cannot be read ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataConfigError(
            f"{path}: not an idx file (bad magic number {data[:4].hex() or 'empty'})"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataConfigError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataConfigError(
            f"{path}: the header promises shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(data) - header} bytes (truncated or not Fashion-MNIST)"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataConfigError(
        f"{root}: missing {stem}.gz (or {stem}); a Fashion-MNIST folder holds the four idx files "
        "(on Debian/Ubuntu: apt-get install dataset-fashion-mnist)"
    )


def check_files(cfg: DataConfig) -> dict[str, tuple[Path, Path]]:
    """The (images, labels) file of each split."""
    root = require_dir(cfg.dataset_root, "the Fashion-MNIST idx files")
    return {
        split: (_find(root, images), _find(root, labels))
        for split, (images, labels) in FILE_STEMS.items()
    }


class FashionMNISTDataset(ImageDataset):
    """One split held in memory as a uint8 [N, 28, 28] array; images come out as RGB."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, split: str, transform=None):
        super().__init__(range(len(labels)), labels, CLASS_NAMES, split, transform)
        self.pixels = pixels

    def load(self, sample: int) -> Image.Image:
        return Image.fromarray(self.pixels[sample], "L").convert("RGB")


def _read_split(images_path: Path, labels_path: Path, split: str) -> FashionMNISTDataset:
    pixels, labels = read_idx(images_path), read_idx(labels_path)
    if pixels.ndim != 3 or pixels.dtype != np.uint8:
        raise DataConfigError(
            f"{images_path}: expected uint8 images [N, H, W], got {pixels.dtype} {pixels.shape}"
        )
    if labels.ndim != 1:
        raise DataConfigError(
            f"{labels_path}: expected a vector of labels, got shape {labels.shape}"
        )
    if len(labels) != len(pixels):
        raise DataConfigError(
            f"{labels_path}: {len(labels)} labels for {len(pixels)} images in {images_path}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataConfigError(
            f"{labels_path}: labels must be 0..9, found {labels.min()}..{labels.max()}"
        )
    return FashionMNISTDataset(pixels, labels.astype(np.int64), split)


def open_splits(cfg: DataConfig) -> DataSplits:
    files = check_files(cfg)
    train, test = (_read_split(*files[split], split) for split in ("train", "test"))
    return DataSplits("fashion_mnist", train, test, list(CLASS_NAMES))
