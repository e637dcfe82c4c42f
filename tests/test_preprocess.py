"""Image inputs of every supported kind, timm parity, and errors that name the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from qpm_zoo import InputError, PreprocessConfig
from qpm_zoo.preprocess import ImagePreprocessor, LoadedImage, load_image


def as_uint8(loaded: LoadedImage) -> np.ndarray:
    """A loaded image as HWC uint8 RGB, whichever form load_image kept it in."""
    if isinstance(loaded.image, Image.Image):
        return np.asarray(loaded.image)
    return np.clip(np.round(loaded.image * 255.0), 0, 255).astype(np.uint8)


def _timm_eval(config: PreprocessConfig):
    from timm.data import create_transform

    return create_transform(
        input_size=config.input_size,
        interpolation=config.interpolation,
        crop_pct=config.crop_pct,
        crop_mode=config.crop_mode,
        mean=config.mean,
        std=config.std,
    )


@pytest.mark.parametrize(
    "config, size",
    [
        (PreprocessConfig(), (300, 200)),
        (PreprocessConfig(), (200, 301)),
        (
            PreprocessConfig(input_size=(3, 96, 96), crop_pct=1.0, interpolation="bilinear"),
            (97, 250),
        ),
        (PreprocessConfig(input_size=(3, 64, 64), crop_mode="squash", crop_pct=0.9), (40, 90)),
        (PreprocessConfig(input_size=(3, 64, 80), crop_pct=0.95), (120, 70)),
    ],
)
def test_pil_preprocessing_equals_timm(config, size):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours, _ = ImagePreprocessor(config)(image)
    theirs = _timm_eval(config)(image).numpy()
    assert ours.shape == (1, *config.input_size)
    np.testing.assert_allclose(ours[0], theirs, atol=1e-5)


@pytest.fixture
def prep() -> ImagePreprocessor:
    return ImagePreprocessor(PreprocessConfig(input_size=(3, 32, 32), crop_pct=1.0))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "1", "LA"])
def test_pil_images_in_any_mode_become_rgb(prep, mode):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).convert(mode)
    batch, loaded = prep(image)
    assert batch.shape == (1, 3, 32, 32)
    assert np.isfinite(batch).all()
    assert as_uint8(loaded[0]).shape == (40, 50, 3)


def test_uint8_array_float_array_and_tensor_agree(prep):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    from_uint8, _ = prep(pixels)
    from_float, _ = prep(pixels.astype(np.float32) / 255.0)
    from_tensor, _ = prep(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)
    from_pil, _ = prep(Image.fromarray(pixels))
    # same size and crop_pct=1: no resampling, so all four give the same numbers
    np.testing.assert_allclose(from_uint8, from_pil)
    np.testing.assert_allclose(from_float, from_uint8, atol=1e-5)
    np.testing.assert_allclose(from_tensor, from_uint8, atol=1e-5)


def test_greyscale_and_single_channel_arrays(prep):
    grey = np.full((20, 20), 128, np.uint8)
    a, _ = prep(grey)
    b, _ = prep(grey[:, :, None])
    c, _ = prep(torch.full((1, 20, 20), 128 / 255.0))
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c, atol=1e-5)
    raw = a[0] * prep.std + prep.mean  # undo the per-channel normalisation: R = G = B
    assert np.allclose(raw[0], raw[1]) and np.allclose(raw[1], raw[2])
    assert np.allclose(raw, 128 / 255.0, atol=1e-6)


def test_file_path_and_list(prep, image_file):
    batch, loaded = prep([str(image_file), image_file, Image.open(image_file)])
    assert batch.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(batch[0], batch[1])
    np.testing.assert_allclose(batch[0], batch[2])
    assert loaded[0].name == str(image_file)


def test_missing_file_is_named(prep, tmp_path):
    with pytest.raises(InputError, match=r"nope\.jpg: no such file"):
        prep(str(tmp_path / "nope.jpg"))


def test_unreadable_file_is_named(prep, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image")
    with pytest.raises(InputError, match=r"notes\.jpg: not an image file"):
        prep([bad])


def test_truncated_image_file_is_named(prep, tmp_path, image_file):
    cut = tmp_path / "cut.png"
    data = image_file.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"cut\.png"):
        prep(cut)


def test_wrong_array_shape_names_the_input(prep):
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError, match=r"input\[1\] \(ndarray of shape \(2, 8, 8, 3\)\).*HWC"):
        prep([good, np.zeros((2, 8, 8, 3), np.uint8)])
    with pytest.raises(InputError, match=r"shape \(3, 8, 8\)"):
        prep(np.zeros((3, 8, 8), np.uint8))  # CHW numpy is not HWC


def test_normalised_float_array_is_refused(prep):
    with pytest.raises(InputError, match=r"float images must hold values in \[0, 1\]"):
        prep(np.full((8, 8, 3), -1.5, np.float32))


def test_unsupported_type_and_empty_list(prep):
    with pytest.raises(InputError, match="unsupported input type dict"):
        prep({"image": 1})
    with pytest.raises(InputError, match="empty list"):
        prep([])


def test_load_image_of_rgba_array_composites_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    loaded = load_image(rgba)
    assert as_uint8(loaded).min() == 255
