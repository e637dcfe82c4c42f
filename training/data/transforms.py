"""Training and evaluation transforms: PIL image → normalised float tensor [3, H, W].

Evaluation reuses qpm_zoo's ImagePreprocessor, so the numbers a model is trained and evaluated
on are exactly the numbers it sees at inference. Training resizes by the same rule and then
augments:

- "paper": the authors' recipe (ThomasNorr/QPM get_data.py): resize; a random crop with
  4 px padding unless the images are squashed to size (CUB ground-truth crops); horizontal
  flip; ColorJitter(brightness=contrast=saturation=0.1); TrivialAugmentWide.
- "light": resize, random crop with small padding, horizontal flip, brightness/contrast
  jitter 0.1. No saturation or hue change and no TrivialAugment (whose Solarize and Color ops
  would turn one concept colour into another): the choice for the known-concept data.
- "none": the evaluation transform.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

from qpm_zoo.config import PreprocessConfig
from qpm_zoo.preprocess import ImagePreprocessor, LoadedImage, load_image

AUGMENTS = ("paper", "light", "none")


class EvalTransform:
    """Exactly qpm_zoo's inference preprocessing, as a torch tensor."""

    def __init__(self, preprocessing: PreprocessConfig):
        self.preprocessor = ImagePreprocessor(preprocessing)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        loaded = LoadedImage("image", image) if image.mode == "RGB" else load_image(image)
        return torch.from_numpy(self.preprocessor.to_model_input(loaded))

    def __repr__(self) -> str:
        return f"EvalTransform({self.preprocessor.config})"


class ResizeLikeEval:
    """The resize step of the evaluation preprocessing (same size rule and interpolation)."""

    def __init__(self, preprocessing: PreprocessConfig):
        self.preprocessor = ImagePreprocessor(preprocessing)

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.resize(self.preprocessor.resized_size(*image.size), self.preprocessor.resample)

    def __repr__(self) -> str:
        return f"ResizeLikeEval(input_size={self.preprocessor.config.input_size})"


def eval_transform(preprocessing: PreprocessConfig) -> Callable[[Image.Image], torch.Tensor]:
    return EvalTransform(preprocessing)


def train_transform(
    preprocessing: PreprocessConfig, augment: str
) -> Callable[[Image.Image], torch.Tensor]:
    """The training transform for `augment` in AUGMENTS (see the module docstring)."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {list(AUGMENTS)}, got {augment!r}")
    if augment == "none":
        return EvalTransform(preprocessing)
    _, height, width = preprocessing.input_size
    steps: list[Callable] = [ResizeLikeEval(preprocessing)]
    if augment == "paper":
        padding = 0 if preprocessing.crop_mode == "squash" else 4
        steps += [
            T.RandomCrop((height, width), padding=padding, pad_if_needed=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
            T.TrivialAugmentWide(),
        ]
    else:
        steps += [
            T.RandomCrop(
                (height, width), padding=max(2, round(min(height, width) / 16)), pad_if_needed=True
            ),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    steps += [T.ToTensor(), T.Normalize(preprocessing.mean, preprocessing.std)]
    return T.Compose(steps)
