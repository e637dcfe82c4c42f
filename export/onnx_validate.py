"""Check an ONNX export against the PyTorch model it came from, output by output.

Difference measure (per output tensor, per input batch): the largest absolute difference, and
that divided by the largest magnitude of the PyTorch output (floored at 1e-6), i.e.

    max_rel = max|onnx − torch| / max(max|torch|, 1e-6)

An element-wise relative difference would be meaningless where the reference is near zero (the
ReLU feature maps are mostly zeros); relative to the output's scale it says how many digits of
the output's largest values agree. Inputs are random normalised pixels and real photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qpm_zoo.explain import InterpretableModel
from qpm_zoo.formatting import format_table
from qpm_zoo.onnx_model import OUTPUT_NAMES
from qpm_zoo.preprocess import ImagePreprocessor, LoadedImage, load_image

from .errors import ExportError

SCALE_FLOOR = 1e-6
FP32_TOLERANCE = 1e-4
#: float16 keeps about 3 significant digits per operation; through a deep backbone the outputs
#: agree to a few per mille up to 2 % (measured with the head kept in float32: ImageNet-pretrained
#: EfficientNet-Lite0 at 224 px 0.9 % on logits and features, 2 % on feature maps; random-weight
#: ResNet-50 with reduced strides 0.06 %; test_resnet ~0.2 %).
FP16_TOLERANCE = 5e-2

# Regions (left, top, right, bottom as fractions) cut from real photos to get more real views.
_CROPS = (
    (0.0, 0.0, 1.0, 1.0),
    (0.0, 0.0, 0.6, 0.6),
    (0.4, 0.4, 1.0, 1.0),
    (0.2, 0.0, 0.8, 0.6),
    (0.0, 0.4, 0.6, 1.0),
)


@dataclass(frozen=True)
class ValidationInput:
    kind: str  #: "random" or "real"
    pixel_values: np.ndarray  #: [B, 3, H, W] normalised float32


@dataclass(frozen=True)
class OutputDiff:
    """How far one output of the export is from PyTorch's on one input batch."""

    inputs: str
    batch: int
    output: str
    max_abs: float
    max_rel: float


def difference(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max absolute difference, scale-relative difference) as the module docstring defines."""
    candidate = np.asarray(candidate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ExportError(f"output shapes differ: {candidate.shape} vs {reference.shape}")
    max_abs = float(np.max(np.abs(candidate - reference))) if reference.size else 0.0
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return max_abs, max_abs / max(scale, SCALE_FLOOR)


def sample_photos() -> list[LoadedImage]:
    """Real photographs that ship with scikit-learn (china.jpg, flower.jpg); [] without it."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return []
    data = load_sample_images()
    names = [name.rsplit("/", 1)[-1] for name in data.filenames]
    return [
        LoadedImage(f"sklearn {name}", load_image(image).image)
        for name, image in zip(names, data.images)
    ]


def real_views(images: Sequence[LoadedImage], count: int) -> list[LoadedImage]:
    """`count` views of the given photos: each whole photo first, then crops of them."""
    views = [_crop(item, box) for box in _CROPS for item in images]
    return [views[i % len(views)] for i in range(count)] if views else []


def _crop(item: LoadedImage, box: tuple[float, float, float, float]) -> LoadedImage:
    if box == (0.0, 0.0, 1.0, 1.0):
        return item
    width, height = item.size
    left, top = int(box[0] * width), int(box[1] * height)
    right, bottom = max(left + 1, int(box[2] * width)), max(top + 1, int(box[3] * height))
    if isinstance(item.image, np.ndarray):
        region = item.image[top:bottom, left:right]
    else:
        region = item.image.crop((left, top, right, bottom))
    return LoadedImage(f"{item.name} crop {box}", region)


def validation_inputs(
    preprocessor: ImagePreprocessor,
    photos: Sequence[LoadedImage],
    batch_sizes: Sequence[int],
    seed: int = 0,
) -> list[ValidationInput]:
    """For each batch size: a batch of random normalised pixels and, if photos are given, one of
    real images run through the checkpoint's preprocessing."""
    largest = max(batch_sizes)
    _, height, width = preprocessor.config.input_size
    noise = (
        np.random.default_rng(seed).standard_normal((largest, 3, height, width)).astype(np.float32)
    )
    real = None
    if photos:
        real = np.stack([preprocessor.to_model_input(v) for v in real_views(photos, largest)])
    out = []
    for b in batch_sizes:
        out.append(ValidationInput("random", noise[:b]))
        if real is not None:
            out.append(ValidationInput("real", real[:b]))
    return out


@dataclass(frozen=True)
class ValidationReport:
    rows: tuple[OutputDiff, ...]
    tolerance: float
    labels_agree: int
    labels_total: int

    @property
    def passed(self) -> bool:
        return all(r.max_rel <= self.tolerance for r in self.rows)

    def worst(self, output: str) -> OutputDiff:
        return max((r for r in self.rows if r.output == output), key=lambda r: r.max_rel)

    def to_record(self) -> dict:
        """The summary config.json keeps under onnx.validation."""
        return {
            "reference": "PyTorch float32",
            "relative_difference": "max|onnx - torch| / max(max|torch|, 1e-6), per output",
            "tolerance": self.tolerance,
            "inputs": sorted({r.inputs for r in self.rows}),
            "batch_sizes": sorted({r.batch for r in self.rows}),
            "max_abs_diff": {o: self.worst(o).max_abs for o in OUTPUT_NAMES},
            "max_rel_diff": {o: self.worst(o).max_rel for o in OUTPUT_NAMES},
            "labels_agree": f"{self.labels_agree}/{self.labels_total}",
        }

    def table(self) -> str:
        return format_table(
            ["inputs", "batch", "output", "max abs diff", "max rel diff", "ok"],
            [
                (r.inputs, r.batch, r.output, r.max_abs, r.max_rel, r.max_rel <= self.tolerance)
                for r in self.rows
            ],
            floatfmt=".3g",
        )


def validate(
    reference: InterpretableModel,
    candidate: InterpretableModel,
    inputs: Sequence[ValidationInput],
    tolerance: float,
) -> ValidationReport:
    """Run both backends on every input batch and compare their three outputs."""
    rows: list[OutputDiff] = []
    agree = total = 0
    for item in inputs:
        ref = reference.forward_arrays(item.pixel_values, with_maps=True)
        got = candidate.forward_arrays(item.pixel_values, with_maps=True)
        for name, a, b in zip(OUTPUT_NAMES, got, ref):
            rows.append(OutputDiff(item.kind, len(item.pixel_values), name, *difference(a, b)))
        agree += int(np.sum(got.logits.argmax(1) == ref.logits.argmax(1)))
        total += len(item.pixel_values)
    return ValidationReport(tuple(rows), tolerance, agree, total)


#: Top-1 agreement with PyTorch float32 on real images a variant must reach to be written.
AGREEMENT_TARGETS = {"float16": 0.995, "int8": 0.99}
#: |logit − (Σ contributions + bias)| / max(max|logit|, 1) above which an explanation is inexact.
EXACTNESS_TOLERANCE = 1e-5


@dataclass(frozen=True)
class VariantReport:
    """How a float16 or int8 variant compares with PyTorch float32 on real images."""

    precision: str
    images: int
    top1_agree: int
    max_logit_diff: float  #: largest |variant logit − torch logit| over all images and classes
    max_rel_diff: dict[str, float]  #: per output, as `difference` measures it
    explanation_residual: float  #: largest relative gap of logit vs Σ contributions + bias
    target: float

    @property
    def agreement(self) -> float:
        return self.top1_agree / self.images if self.images else 0.0

    @property
    def exact(self) -> bool:
        return self.explanation_residual <= EXACTNESS_TOLERANCE

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.agreement >= self.target and self.exact

    def to_record(self) -> dict:
        """The summary config.json keeps under onnx.variants.<precision>.validation."""
        return {
            "reference": "PyTorch float32",
            "images": self.images,
            "top1_agreement": self.agreement,
            "target": self.target,
            "max_logit_abs_diff": self.max_logit_diff,
            "max_rel_diff": dict(self.max_rel_diff),
            "explanation_residual": self.explanation_residual,
            "passed": self.passed,
        }

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        exact = "exact" if self.exact else "NOT exact"
        return (
            f"{self.precision}: top-1 agreement with PyTorch float32 {100 * self.agreement:.2f} % "
            f"on {self.images} real images (target {100 * self.target:.1f} %), largest logit "
            f"difference {self.max_logit_diff:.3g}; explanations {exact} (residual "
            f"{self.explanation_residual:.1e}): {verdict}"
        )


def explanation_residual(
    model: InterpretableModel, logits: np.ndarray, features: np.ndarray
) -> float:
    """Largest |logit − (W · features + bias)| over a batch, relative to the logits' scale: zero
    (up to float32 rounding) when every class's explanation adds up to its logit."""
    implied = (
        features.astype(np.float64) @ model.class_weights.T.astype(np.float64) + model.class_bias
    )
    gap = float(np.max(np.abs(logits.astype(np.float64) - implied)))
    return gap / max(float(np.max(np.abs(logits))), 1.0)


def validate_variant(
    reference: InterpretableModel,
    candidate: InterpretableModel,
    batches: Sequence[np.ndarray],
    precision: str,
) -> VariantReport:
    """Compare a variant with the float32 PyTorch model on preprocessed real-image batches."""
    agree = images = 0
    max_logit = residual = 0.0
    rel = dict.fromkeys(OUTPUT_NAMES[:2], 0.0)
    for batch in batches:
        ref = reference.forward_arrays(batch)
        got = candidate.forward_arrays(batch)
        agree += int(np.sum(got.logits.argmax(1) == ref.logits.argmax(1)))
        images += len(batch)
        max_logit = max(max_logit, difference(got.logits, ref.logits)[0])
        for name, a, b in zip(OUTPUT_NAMES, got, ref):
            if name in rel:
                rel[name] = max(rel[name], difference(a, b)[1])
        residual = max(residual, explanation_residual(candidate, got.logits, got.features))
    return VariantReport(
        precision, images, agree, max_logit, rel, residual, AGREEMENT_TARGETS[precision]
    )
