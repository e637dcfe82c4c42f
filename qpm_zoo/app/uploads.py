"""Checking an uploaded file before it is decoded: the explorer serves whoever opens the page,
so a text file or a decompression bomb must become a message in the page, not a crash."""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError

from ..errors import InputError

#: Larger uploads are refused before they are read (a photo is a few MB).
MAX_UPLOAD_BYTES = 32 * 2**20
#: Larger images are refused from their header, before their pixels are decoded.
MAX_UPLOAD_PIXELS = 40_000_000


def check_upload(path: str | os.PathLike, shown_name: str | None = None) -> None:
    """InputError, naming the file as the user called it, unless `path` is an image of sane size.

    Only the file size and the image header are read; decoding is left to the model's loader.
    """
    name = shown_name or os.path.basename(os.fspath(path))
    try:
        size = os.path.getsize(path)
    except OSError:
        raise InputError(f"{name}: the upload cannot be read") from None
    if size > MAX_UPLOAD_BYTES:
        raise InputError(
            f"{name}: {size / 2**20:.0f} MB is larger than the {MAX_UPLOAD_BYTES // 2**20} MB "
            "this page accepts"
        )
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise InputError(f"{name}: not an image file (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: cannot be read as an image ({e})") from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise InputError(
            f"{name}: {width}×{height} pixels is more than the {MAX_UPLOAD_PIXELS // 10**6} "
            "megapixels this page accepts; downscale it first"
        )
