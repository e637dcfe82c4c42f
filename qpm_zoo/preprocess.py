"""Image loading and timm-style evaluation preprocessing with numpy and Pillow only.

Torch-free on purpose: the ONNX inference path runs this on servers without PyTorch. For PIL
images the result equals timm's `transforms_imagenet_eval` (torchvision resize on PIL, centre
crop, normalise), which a test checks.

Accepted inputs (a single one or a list of them):
- a path (str or os.PathLike) to an image file;
- a PIL image in any mode (converted to RGB);
- a numpy array, HWC or HW (greyscale): integers in 0..255 (uint16: 0..65535), or float in 0..1;
- a torch tensor, CHW or HW, with the same value conventions (converted without importing torch).

Values are read on their type's scale, never stretched to the image's own maximum: 16-bit
('I;16', 'I', uint16) is 0..65535 and float ('F') is 0..1, so a 16-bit copy of an image predicts
what the image does. A file's or PIL image's EXIF orientation is applied (as viewers show it).
An image's pixel count is checked against `qpm_zoo.limits` before it is decoded, and only the
part of the resized image the centre crop keeps is computed, so neither a huge nor an extremely
elongated image can exhaust memory.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import PreprocessConfig
from .errors import InputError
from .limits import current_limits, variable_for

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


#: Above this many pixels the resized image is not made whole: only the window the centre crop
#: keeps is resampled (a 1×100000 image would otherwise become 256×25600000 before the crop).
_MAX_RESIZED_PIXELS = 4096 * 4096


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
        _check_size(x.size, name)
        return LoadedImage(name, _to_rgb(_upright(x, name), name))
    if _is_torch_tensor(x):
        array = _tensor_to_numpy(x, name)
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


def _check_size(size: tuple[int, int], name: str) -> None:
    """An image of (width, height) is neither empty nor larger than the pixel limit."""
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"{name}: the image is empty ({width}x{height} pixels)")
    largest = current_limits().max_image_pixels
    if width * height > largest:
        raise InputError(
            f"{name}: {width}x{height} pixels is more than the limit of {largest} (raise it "
            f"with {variable_for('max_image_pixels')})"
        )


def _open_file(path: str) -> Image.Image | np.ndarray:
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            # our own limit (checked from the header, before decoding) replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_size(im.size, path)
                im.load()
                return _to_rgb(_upright(im, path), path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise InputError(
            f"{path}: too large to decode ({e}; qpm-zoo's limit is "
            f"{current_limits().max_image_pixels} pixels)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: cannot be read as an image ({e})") from None


def _upright(im: Image.Image, name: str) -> Image.Image:
    """`im` turned as its EXIF orientation says (a phone's portrait photo stands upright)."""
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError) as e:
        raise InputError(f"{name}: cannot apply its EXIF orientation ({e})") from None


#: PIL modes of one channel of integers or floats, and the value that is white in each: the
#: type's range, not the image's maximum. 'I' holds 16-bit data in practice (Pillow reads
#: 16-bit PNG and PGM files into it).
_WIDE_GREY_WHITE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def _to_rgb(im: Image.Image, name: str = "image") -> Image.Image | np.ndarray:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite transparent images on white instead of keeping whatever colour hides in them.
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode in _WIDE_GREY_WHITE:
        white = _WIDE_GREY_WHITE[im.mode]
        grey = np.asarray(im).astype(np.float32)
        if grey.size and (grey.min() < 0 or grey.max() > white):
            raise InputError(
                f"{name}: a {im.mode} image must hold values in 0..{white}, got "
                f"[{grey.min():.0f}, {grey.max():.0f}]"
            )
        return np.repeat((grey / white)[:, :, None], 3, axis=2)
    if im.mode == "F":
        return _float_pixels(np.asarray(im, dtype=np.float32)[:, :, None].repeat(3, axis=2), name)
    return im.convert("RGB")


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def _tensor_to_numpy(x: Any, name: str) -> np.ndarray:
    """A tensor's values as numpy; dtypes numpy lacks (bfloat16, float8) become float32."""
    tensor = x.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:
        if tensor.dtype.is_floating_point:
            return tensor.float().numpy()
        raise InputError(
            f"{name}: unsupported tensor dtype {tensor.dtype}; use uint8 or float"
        ) from None


def _array_to_image(array: np.ndarray, name: str) -> Image.Image | np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(
            f"{name}: an array image must be HWC (or HW) with 1, 3 or 4 channels, got shape "
            f"{array.shape}; give a batch as a list of images"
        )
    _check_size((array.shape[1], array.shape[0]), name)
    if array.dtype == np.bool_ or array.dtype.kind not in "fiu":
        raise InputError(
            f"{name}: unsupported array dtype {array.dtype}; use integers (uint8: 0..255, "
            "uint16: 0..65535) or float in [0, 1]"
        )
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype.kind in "iu" and array.dtype != np.uint16:
        # integers are 8-bit values whatever their width (a 0/1 mask is black and near-black)
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InputError(
                f"{name}: an integer ({array.dtype}) image must hold values in 0..255 (uint16: "
                f"0..65535), got [{low}, {high}]; for floats in [0, 1] pass a float array"
            )
        array = np.ascontiguousarray(array, dtype=np.uint8)
        if array.shape[2] == 4:
            return _to_rgb(Image.fromarray(array, mode="RGBA"))
        return Image.fromarray(array, mode="RGB")
    if array.dtype == np.uint16:
        pixels = array.astype(np.float32) / 65535.0
    else:
        pixels = _float_pixels(array.astype(np.float32), name)
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:4]
        pixels = pixels[:, :, :3] * alpha + (1.0 - alpha)
    return np.clip(pixels, 0.0, 1.0)


def _float_pixels(array: np.ndarray, name: str) -> np.ndarray:
    """Float pixels, which must be finite and in [0, 1] (a small rounding margin is allowed)."""
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: the image holds NaN or infinite values")
    if array.size and (array.min() < -1e-3 or array.max() > 1.0 + 1e-3):
        raise InputError(
            f"{name}: float images must hold values in [0, 1], got [{array.min():.3g}, "
            f"{array.max():.3g}] (pass raw images, not already-normalised tensors; uint8 is 0..255)"
        )
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
        # the crop window inside the resized image
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + self.width, rw), min(top + self.height, rh)
        if rw * rh <= _MAX_RESIZED_PIXELS and isinstance(loaded.image, Image.Image):
            resized = loaded.image.resize((rw, rh), self.resample)  # exactly timm's numbers
            pixels = np.asarray(resized, dtype=np.float32)[y0:y1, x0:x1] / 255.0
        else:
            pixels = self._resampled_window(loaded, (rw, rh), (x0, y0, x1, y1))
        window = np.zeros((self.height, self.width, 3), dtype=np.float32)  # torchvision pads 0
        window[y0 - top : y1 - top, x0 - left : x1 - left] = pixels
        chw = np.ascontiguousarray(window.transpose(2, 0, 1), dtype=np.float32)
        return (chw - self.mean) / self.std

    def _resampled_window(
        self, loaded: LoadedImage, resized: tuple[int, int], window: tuple[int, int, int, int]
    ) -> np.ndarray:
        """The pixels [h, w, 3] in 0..1 of `window` (x0, y0, x1, y1) of the image resized to
        `resized`, computed per channel in float from the source region it covers (PIL's `box`:
        the same filter taps as resizing the whole image, without allocating it)."""
        width, height = loaded.size
        (rw, rh), (x0, y0, x1, y1) = resized, window
        box = (x0 * width / rw, y0 * height / rh, x1 * width / rw, y1 * height / rh)
        image = loaded.image
        if isinstance(image, Image.Image):
            channels = [band.convert("F") for band in image.split()]
            scale = 255.0
        else:
            channels = [Image.fromarray(image[:, :, c], mode="F") for c in range(3)]
            scale = 1.0
        out = [np.asarray(c.resize((x1 - x0, y1 - y0), self.resample, box=box)) for c in channels]
        return np.clip(np.stack(out, axis=-1) / scale, 0.0, 1.0)

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
