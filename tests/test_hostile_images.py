"""Hostile and unusual images (issue #16, groups 4, 7 and 9), as real files written here: each
is either converted correctly (the same prediction as the equivalent plain RGB image) or refused
with one line naming the input, before memory is spent on it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model
from PIL import Image

from qpm_zoo import InputError, PreprocessConfig
from qpm_zoo import preprocess as preprocess_module
from qpm_zoo.preprocess import ImagePreprocessor, load_image

PREP = ImagePreprocessor(PreprocessConfig(input_size=(3, 64, 64), mean=(0.5,) * 3, std=(0.5,) * 3))


@pytest.fixture(scope="module")
def model():
    return make_model("qpm", seed=0)


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    """A smooth 8-bit grey picture (smooth, so resampling differences stay tiny)."""
    y, x = np.mgrid[0:90, 0:120]
    return (127 + 100 * np.sin(x / 9.0) * np.cos(y / 13.0)).astype(np.uint8)


def _same_prediction(model, image, reference) -> None:
    ours, theirs = model.predict(image), model.predict(reference)
    assert ours.label == theirs.label
    np.testing.assert_allclose(ours.logit, theirs.logit, atol=2e-3)
    np.testing.assert_allclose(
        [f.activation for f in ours.explanation.features],
        [f.activation for f in theirs.explanation.features],
        atol=2e-3,
    )


# -- group 7: values on their type's scale, and EXIF orientation --------------------------------
def test_a_16_bit_grey_png_predicts_like_the_8_bit_one(model, grey, tmp_path):
    eight, sixteen = tmp_path / "grey8.png", tmp_path / "grey16.png"
    Image.fromarray(grey).save(eight)
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)  # 16-bit grey PNG
    assert Image.open(sixteen).mode.startswith("I")
    _same_prediction(model, str(sixteen), str(eight))


def test_a_dark_16_bit_image_is_not_stretched_to_white(tmp_path):
    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((40, 40), 1000, np.uint16)).save(path)  # 1000/65535: nearly black
    pixels = load_image(str(path)).image
    np.testing.assert_allclose(pixels, 1000 / 65535, atol=1e-6)


def test_32_bit_integer_and_float_tiffs_predict_like_the_8_bit_image(model, grey, tmp_path):
    eight, as_int, as_float = tmp_path / "g.png", tmp_path / "i.tif", tmp_path / "f.tif"
    Image.fromarray(grey).save(eight)
    Image.fromarray(grey.astype(np.int32) * 257, mode="I").save(as_int)
    Image.fromarray(grey.astype(np.float32) / 255.0, mode="F").save(as_float)
    assert Image.open(as_int).mode == "I" and Image.open(as_float).mode == "F"
    _same_prediction(model, str(as_int), str(eight))
    _same_prediction(model, str(as_float), str(eight))


def test_a_float_tiff_outside_0_1_is_refused(tmp_path):
    path = tmp_path / "hdr.tif"
    Image.fromarray(np.full((8, 8), 7.5, np.float32), mode="F").save(path)
    with pytest.raises(InputError, match=r"hdr\.tif: float images must hold values in \[0, 1\]"):
        load_image(str(path))


def test_an_I_image_beyond_16_bits_is_refused(tmp_path):
    path = tmp_path / "wide.tif"
    Image.fromarray(np.full((8, 8), 10**6, np.int32), mode="I").save(path)
    with pytest.raises(InputError, match=r"wide\.tif: a I image must hold values in 0\.\.65535"):
        load_image(str(path))


def _exif_rotated(upright: Image.Image) -> tuple[Image.Image, Image.Exif]:
    """The pixels a camera stores for `upright` with EXIF orientation 6 (viewers turn them
    90° clockwise), and that EXIF block."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return upright.transpose(Image.Transpose.ROTATE_90), exif


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(model, tmp_path, suffix):
    rng = np.random.default_rng(0)
    upright = Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)).resize((100, 140))
    stored, exif = _exif_rotated(upright)
    rotated_file, upright_file = tmp_path / f"rotated{suffix}", tmp_path / f"upright{suffix}"
    stored.save(rotated_file, exif=exif, quality=100)
    upright.save(upright_file, quality=100)
    loaded = load_image(str(rotated_file))
    assert loaded.size == upright.size  # (100, 140), not the stored (140, 100)
    if suffix == ".png":  # lossless: exactly the upright pixels
        assert np.array_equal(np.asarray(loaded.image), np.asarray(upright))
        _same_prediction(model, str(rotated_file), str(upright_file))
    else:  # JPEG blocks differ between the two files; the picture is the same way up
        a = np.asarray(loaded.image, np.float32)
        b = np.asarray(load_image(str(upright_file)).image, np.float32)
        assert np.abs(a - b).mean() < 8
    # a PIL image the caller opened is turned the same way
    with Image.open(rotated_file) as im:
        assert load_image(im).size == upright.size


# -- group 7: arrays and tensors of every integer and float type --------------------------------
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_integer_arrays_are_8_bit_values_whatever_their_width(dtype):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 128, (40, 50, 3)).astype(np.uint8)
    ours, _ = PREP(pixels.astype(dtype))
    theirs, _ = PREP(pixels)
    np.testing.assert_array_equal(ours, theirs)


def test_a_0_1_integer_mask_is_black_not_white():
    mask = np.eye(40, dtype=np.int64)
    ours, _ = PREP(mask)
    theirs, _ = PREP(mask.astype(np.uint8))  # 0 and 1 out of 255
    np.testing.assert_array_equal(ours, theirs)
    assert ours.max() < -0.95  # (1/255 - 0.5) / 0.5: nearly black everywhere


def test_integer_arrays_out_of_range_name_the_range():
    with pytest.raises(
        InputError, match=r"an integer \(int64\) image must hold values in 0\.\.255"
    ):
        load_image(np.full((8, 8, 3), 300, np.int64))
    with pytest.raises(InputError, match=r"an integer \(int16\) image .* got \[-5, 0\]"):
        load_image(np.arange(-5, 59, dtype=np.int16).reshape(8, 8).clip(-5, 0))


def test_uint16_arrays_are_16_bit(grey):
    ours, _ = PREP(grey.astype(np.uint16) * 257)
    theirs, _ = PREP(grey)
    np.testing.assert_allclose(ours, theirs, atol=1e-2)


def test_boolean_and_complex_arrays_are_refused():
    with pytest.raises(InputError, match=r"unsupported array dtype bool"):
        load_image(np.zeros((8, 8), bool))
    with pytest.raises(InputError, match=r"unsupported array dtype complex64"):
        load_image(np.zeros((8, 8), np.complex64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_reduced_and_double_precision_tensors(dtype):
    rng = np.random.default_rng(2)
    pixels = torch.from_numpy(rng.random((3, 40, 40), dtype=np.float32))
    ours, _ = PREP(pixels.to(dtype))
    theirs, _ = PREP(pixels.to(dtype).float())
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_boolean_tensor_is_refused():
    with pytest.raises(InputError, match=r"unsupported array dtype bool"):
        load_image(torch.zeros(3, 8, 8, dtype=torch.bool))


# -- group 9: empty images, folders ---------------------------------------------------------------
@pytest.mark.parametrize(
    "image",
    [Image.new("RGB", (0, 0)), Image.new("L", (0, 7)), np.zeros((0, 5, 3), np.uint8)],
    ids=["pil-0x0", "pil-0x7", "array-0x5"],
)
def test_an_empty_image_is_refused(image):
    with pytest.raises(InputError, match=r"the image is empty \(\d+x\d+ pixels\)"):
        PREP(image)


def test_a_folder_is_not_called_a_missing_file(tmp_path):
    with pytest.raises(InputError, match=r": is a folder, not an image file"):
        load_image(str(tmp_path))


# -- group 4: memory bounded before decoding --------------------------------------------------------
def _png_header_claiming(path: Path, width: int, height: int) -> Path:
    """A real PNG of 1×1 grey pixels whose header claims width×height (the data stays tiny)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x80")
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_one_line(tmp_path):
    path = _png_header_claiming(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 100
    with pytest.raises(InputError, match=r"bomb\.png: (too large to decode|20000x20000 pixels)"):
        load_image(str(path))


def test_the_pixel_limit_is_checked_from_the_header_and_configurable(tmp_path, monkeypatch):
    path = _png_header_claiming(tmp_path / "big.png", 5000, 4000)  # 20 M pixels, never decoded
    monkeypatch.setenv("QPM_MAX_IMAGE_PIXELS", "10_000_000")
    with pytest.raises(
        InputError,
        match=r"big\.png: 5000x4000 pixels is more than the limit of 10000000 "
        r"\(raise it with QPM_MAX_IMAGE_PIXELS\)",
    ):
        load_image(str(path))
    with pytest.raises(InputError, match=r"input \(ndarray of shape \(4000, 5000\)\): 5000x4000"):
        load_image(np.zeros((4000, 5000), np.uint8))
    monkeypatch.setenv("QPM_MAX_IMAGE_PIXELS", "many")
    with pytest.raises(Exception, match=r"QPM_MAX_IMAGE_PIXELS: must be a positive integer"):
        load_image(str(path))


def test_an_elongated_image_costs_no_more_than_its_crop(tmp_path):
    """1×100000 pixels: timm's resize would make it 73×7300000 (2 GB) before the crop."""
    path = tmp_path / "line.png"
    Image.fromarray(
        np.tile(np.arange(100000, dtype=np.uint32) % 256, (1, 1)).astype(np.uint8)
    ).save(path)
    assert path.stat().st_size < 2000
    batch, _ = PREP(str(path))
    assert batch.shape == (1, 3, 64, 64) and np.isfinite(batch).all()


def test_the_crop_window_equals_the_crop_of_the_whole_resize(monkeypatch):
    """The bounded path (only the crop window resampled, in float) agrees with resizing all of
    it (in 8 bits, which also clips the first pass's overshoot: a smooth picture keeps that off)."""
    y, x = np.mgrid[0:30, 0:700]
    phase = np.arange(3)[None, None, :]
    smooth = 127 + 100 * np.sin(x[..., None] / 11.0 + phase) * np.cos(y[..., None] / 7.0)
    image = Image.fromarray(smooth.astype(np.uint8))
    whole, _ = PREP(image)
    monkeypatch.setattr(preprocess_module, "_MAX_RESIZED_PIXELS", 100)
    window, _ = PREP(image)
    np.testing.assert_allclose(window, whole, atol=2.5 / 255 / 0.5)  # 8-bit rounding of PIL
