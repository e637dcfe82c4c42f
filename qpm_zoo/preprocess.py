"""Image loading and timm-style evaluation preprocessing with numpy and Pillow only.

Torch-free on purpose: the ONNX inference path runs this on servers without PyTorch. For PIL
images the result equals timm's `transforms_imagenet_eval` (torchvision resize on PIL, centre
crop, normalise), which a test checks.

Accepted inputs (a single one or a list of them):
- a path (str or os.PathLike) to an image file;
- a PIL image in any mode (converted to RGB);
- a numpy array, HWC or HW (greyscale): uint8 in 0..255, or float in 0..1;
- a torch tensor, CHW or HW, with the same value conventions (converted without importing torch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import PreprocessConfig
from .errors import InputError

#: File endings treated as images when a folder is searched for them.
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder` (recursively, hidden entries skipped), in sorted order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return found


_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class LoadedImage:
    """An input turned into an RGB image: PIL for 8-bit data, a float HWC array otherwise."""

    name: str
    image: Image.Image | np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) like PIL."""
        if isinstance(self.image, Image.Image):
            return self.image.size
        return self.image.shape[1], self.image.shape[0]


def is_batch(inputs: Any) -> bool:
    """Lists and tuples are batches; everything else is one image."""
    return isinstance(inputs, (list, tuple))


def describe(x: Any, position: int | None) -> str:
    """A short name for an input, used in results and in error messages."""
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    where = "input" if position is None else f"input[{position}]"
    kind = type(x).__name__
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"{where} ({kind} of shape {tuple(shape)})"
    if isinstance(x, Image.Image):
        return f"{where} (PIL image {x.mode} {x.size[0]}x{x.size[1]})"
    return f"{where} ({kind})"


def load_image(x: Any, position: int | None = None) -> LoadedImage:
    """Turn one supported input into an RGB image, or raise InputError naming it."""
    name = describe(x, position)
    if isinstance(x, (str, os.PathLike)):
        return LoadedImage(name, _open_file(os.fspath(x)))
    if isinstance(x, Image.Image):
        return LoadedImage(name, _to_rgb(x))
    if _is_torch_tensor(x):
        array = x.detach().cpu().numpy()
        if array.ndim == 3:
            if array.shape[0] not in (1, 3, 4):
                raise InputError(
                    f"{name}: a tensor image must be CHW with 1, 3 or 4 channels, got shape {array.shape}"
                )
            array = np.moveaxis(array, 0, -1)
        return LoadedImage(name, _array_to_image(array, name))
    if isinstance(x, np.ndarray):
        return LoadedImage(name, _array_to_image(x, name))
    raise InputError(
        f"{name}: unsupported input type {type(x).__name__}; give a file path, a PIL image, "
        "an HWC numpy array or a CHW torch tensor (or a list of them)"
    )


def _open_file(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return _to_rgb(im)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: cannot be read as an image ({e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparent images on white instead of keeping whatever colour hides in them.
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(im, dtype=np.float64)
        top = array.max() if array.size else 1.0
        scaled = np.clip(array / (top if top > 0 else 1.0) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    return im.convert("RGB")


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def _array_to_image(array: np.ndarray, name: str) -> Image.Image | np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(
            f"{name}: an array image must be HWC (or HW) with 1, 3 or 4 channels, got shape "
            f"{array.shape}; give a batch as a list of images"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"{name}: the image is empty (shape {array.shape})")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype == np.uint8:
        if array.shape[2] == 4:
            return _to_rgb(Image.fromarray(np.ascontiguousarray(array), mode="RGBA"))
        return Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise InputError(f"{name}: unsupported array dtype {array.dtype}; use uint8 or float")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: the image holds NaN or infinite values")
    if array.dtype.kind == "f" and (array.min() < -1e-3 or array.max() > 1.0 + 1e-3):
        raise InputError(
            f"{name}: float images must hold values in [0, 1], got [{array.min():.3g}, "
            f"{array.max():.3g}] (pass raw images, not already-normalised tensors; uint8 is 0..255)"
        )
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4]
        array = array[:, :, :3] * alpha + (1.0 - alpha)
    return np.clip(array, 0.0, 1.0)


class ImagePreprocessor:
    """Resize, centre-crop and normalise images as the checkpoint's `preprocessing` says."""

    def __init__(self, config: PreprocessConfig):
        self.config = config
        _, self.height, self.width = config.input_size
        self.resample = _PIL_INTERPOLATION[config.interpolation]
        self.mean = np.asarray(config.mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(config.std, dtype=np.float32).reshape(3, 1, 1)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize step, as timm/torchvision compute it."""
        scale_h = math.floor(self.height / self.config.crop_pct)
        scale_w = math.floor(self.width / self.config.crop_pct)
        if self.config.crop_mode == "squash":
            return scale_w, scale_h
        if scale_h == scale_w:
            # torchvision Resize(int): the shorter side becomes `size`, the longer one is truncated.
            size = scale_h
            if width <= height:
                return size, int(size * height / width)
            return int(size * width / height), size
        # Non-square target: scale so that the image covers the target (timm's ResizeKeepRatio).
        ratio = min(height / scale_h, width / scale_w)
        return round(width / ratio), round(height / ratio)

    def geometry(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((resized w, h), (crop left, top)) for an image of the given size."""
        rw, rh = self.resized_size(width, height)
        left = round((rw - self.width) / 2.0)
        top = round((rh - self.height) / 2.0)
        return (rw, rh), (left, top)

    def to_model_input(self, loaded: LoadedImage) -> np.ndarray:
        """One image as a normalised float32 CHW array of the model's input size."""
        width, height = loaded.size
        (rw, rh), (left, top) = self.geometry(width, height)
        if isinstance(loaded.image, Image.Image):
            im = loaded.image.resize((rw, rh), self.resample)
            pixels = np.asarray(im, dtype=np.float32) / 255.0
        else:
            pixels = np.stack(
                [
                    np.asarray(
                        Image.fromarray(loaded.image[:, :, c], mode="F").resize(
                            (rw, rh), self.resample
                        )
                    )
                    for c in range(3)
                ],
                axis=-1,
            )
        pixels = _center_crop(pixels, left, top, self.width, self.height)
        chw = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
        return (chw - self.mean) / self.std

    def to_view(self, batch: np.ndarray) -> np.ndarray:
        """Undo the normalisation of a preprocessed batch [B, 3, H, W]: uint8 [B, H, W, 3],
        exactly the crop the network saw (resize and centre crop included)."""
        rgb = np.clip(batch * self.std[None] + self.mean[None], 0.0, 1.0)
        return np.round(rgb.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)

    def __call__(self, inputs: Any, first: int = 0) -> tuple[np.ndarray, list[LoadedImage]]:
        """A batch [B, 3, H, W] float32 and the loaded images (for names and drawing).

        Images in a list are named by position (`first` is the first one's) unless they are
        files; a single image is not numbered.
        """
        items: Sequence[Any] = inputs if is_batch(inputs) else [inputs]
        if len(items) == 0:
            raise InputError("no images given (an empty list)")
        loaded = [
            load_image(x, first + i if is_batch(inputs) else None) for i, x in enumerate(items)
        ]
        batch = np.stack([self.to_model_input(item) for item in loaded])
        return batch, loaded


def _center_crop(pixels: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """Crop HWC pixels; where the crop leaves the image, pad with zeros like torchvision."""
    h, w = pixels.shape[:2]
    out = np.zeros((height, width, pixels.shape[2]), dtype=np.float32)
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(top + height, h), min(left + width, w)
    out[src_top - top : src_bottom - top, src_left - left : src_right - left] = pixels[
        src_top:src_bottom, src_left:src_right
    ]
    return out
