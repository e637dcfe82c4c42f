"""Training/evaluation transforms: evaluation equals inference preprocessing; the recipes are as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from qpm_zoo import PreprocessConfig
from qpm_zoo.preprocess import ImagePreprocessor
from training.data import eval_transform, train_transform
from training.data.transforms import ResizeLikeEval

PRE = PreprocessConfig(
    input_size=(3, 48, 48),
    interpolation="bilinear",
    crop_pct=0.875,
    mean=(0.5,) * 3,
    std=(0.25,) * 3,
)


def photo(width: int = 70, height: int = 50, seed: int = 0) -> Image.Image:
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    )


def test_eval_is_exactly_the_inference_preprocessing():
    image = photo()
    expected, _ = ImagePreprocessor(PRE)(image)
    got = eval_transform(PRE)(image)
    assert got.dtype == torch.float32 and got.shape == (3, 48, 48)
    assert np.array_equal(got.numpy(), expected[0])
    assert np.array_equal(train_transform(PRE, "none")(image).numpy(), expected[0])
    grey = image.convert("L")  # non-RGB input goes through the same conversion as inference
    assert np.array_equal(eval_transform(PRE)(grey).numpy(), ImagePreprocessor(PRE)(grey)[0][0])


@pytest.mark.parametrize("augment", ["paper", "light"])
def test_training_transforms_give_model_inputs(augment):
    torch.manual_seed(0)
    transform = train_transform(PRE, augment)
    outputs = [transform(photo(70, 50, seed)) for seed in range(4)] + [transform(photo(30, 90, 9))]
    for x in outputs:
        assert x.dtype == torch.float32 and x.shape == (3, 48, 48)
        assert -2.0 - 1e-6 <= x.min() and x.max() <= 2.0 + 1e-6  # (0..1 - 0.5) / 0.25
    image = photo()
    assert not all(torch.equal(transform(image), transform(image)) for _ in range(3)), (
        "random augmentation"
    )


def test_paper_recipe_follows_the_authors():
    steps = train_transform(PRE, "paper").transforms
    assert [type(s) for s in steps] == [
        ResizeLikeEval,
        T.RandomCrop,
        T.RandomHorizontalFlip,
        T.ColorJitter,
        T.TrivialAugmentWide,
        T.ToTensor,
        T.Normalize,
    ]
    crop, jitter = steps[1], steps[3]
    assert crop.padding == 4 and crop.size == (48, 48)
    assert (
        jitter.brightness == jitter.contrast == jitter.saturation == (0.9, 1.1)
        and jitter.hue is None
    )
    squashed = train_transform(
        PreprocessConfig(input_size=(3, 48, 48), crop_mode="squash", crop_pct=1.0), "paper"
    )
    assert squashed.transforms[1].padding == 0, (
        "ground-truth crops are squashed to size, not shifted"
    )
    image = photo(70, 50)
    assert ResizeLikeEval(PRE)(image).size == ImagePreprocessor(PRE).resized_size(70, 50)


def test_light_augmentation_keeps_concept_colours():
    """Hue never changes: a red shape stays red, a blue one blue (TrivialAugment's Solarize would not)."""
    pre = PreprocessConfig(input_size=(3, 64, 64), crop_pct=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
    transform = train_transform(pre, "light")
    assert not any(isinstance(s, T.TrivialAugmentWide) for s in transform.transforms)
    torch.manual_seed(0)
    for rgb, channel in (((220, 30, 30), 0), ((30, 70, 225), 2)):
        image = Image.new("RGB", (64, 64), rgb)
        for _ in range(10):
            x = transform(image)
            filled = (
                x.max(dim=0).values > 0.2
            )  # the random crop pads with black (greyed a little by contrast jitter)
            others = [c for c in range(3) if c != channel]
            assert filled.float().mean() > 0.7
            assert torch.all(x[channel][filled] > x[others[0]][filled] + 0.3)
            assert torch.all(x[channel][filled] > x[others[1]][filled] + 0.3)


def test_unknown_augment_is_named():
    with pytest.raises(
        ValueError, match=r"augment must be one of \['paper', 'light', 'none'\], got 'heavy'"
    ):
        train_transform(PRE, "heavy")
