"""The authors' released checkpoints (ThomasNorr/QPM, ThomasNorr/Q-SENN) as qpm-zoo models.

The authors publish `torch.save(model.state_dict())` files of their ResNet with the
interpretable layer attached. What their code shows, and what this module relies on:

- backbone keys are torchvision's ResNet names (`conv1`, `bn1`, `layer1.0.conv1`, ...,
  `layerN.0.downsample.0/1`), which are also timm's names for resnet18/34/50; the final ReLU
  is applied after layer4, as in timm (architectures/resnet.py);
- reduced strides (`changed_strides=True`) build layer3 and layer4 with stride 1 and no
  dilation: the first block's strided convolution (conv2 in a bottleneck, conv1 in a basic
  block) and its 1x1 shortcut get stride 1, as our `reduce_strides` does (architectures/resnet.py);
- the interpretable layer is `linear.*` (architectures/SLDDLevel.py): `linear.selection` (the n
  selected channels), `linear.mean` and `linear.std` (of the selected features),
  `linear.layer.weight` [C, n] and, for Q-SENN only, `linear.layer.bias` [C];
- the forward average-pools the selected maps and normalises with `(x - mean) / clamp(std,
  min=1e-6)` before the linear layer: our InterpretableHead, with the same std floor.

Reading never runs pickle code (`torch.load(weights_only=True)`), and every key of the file is
either used or refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from qpm_zoo.config import PreprocessConfig, Provenance
from qpm_zoo.errors import QPMError

if TYPE_CHECKING:
    from qpm_zoo.model import QPM

#: Where the authors list their released files (Google Drive folders in the README).
AUTHORS_RELEASES = "https://github.com/ThomasNorr/QPM#pretrained-models"

#: The paper each model type's release belongs to.
PAPERS = {
    "qpm": (
        "Norrenbrock et al., QPM: Discrete Optimization for Globally Interpretable Image "
        "Classification, ICLR 2025 (https://openreview.net/forum?id=GlAeL0I8LX)"
    ),
    "qsenn": (
        "Norrenbrock et al., Q-SENN: Quantized Self-Explaining Neural Networks, AAAI 2024 "
        "(https://ojs.aaai.org/index.php/AAAI/article/view/30145)"
    ),
}

#: The authors' backbones: timm name (the same architecture and key names) → (block, blocks).
ARCHITECTURES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

SELECTION_KEY = "linear.selection"
MEAN_KEY = "linear.mean"
STD_KEY = "linear.std"
WEIGHT_KEY = "linear.layer.weight"
BIAS_KEY = "linear.layer.bias"
HEAD_KEYS = (SELECTION_KEY, MEAN_KEY, STD_KEY, WEIGHT_KEY, BIAS_KEY)


class AuthorsCheckpointError(QPMError, ValueError):
    """An authors' checkpoint file cannot be read or does not match what was asked for."""


# -- evaluation preprocessing ----------------------------------------------------------------------
@dataclass(frozen=True)
class AuthorsDataset:
    """The authors' test-time transform for one dataset (get_data.py, configs/dataset_params.py)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    has_boxes: bool  #: ground-truth crops are possible (CUB-style bird boxes)
    fixed_size: int | None = None  #: the only image size their code accepts
    resize_to: int | None = None  #: shorter side before the centre crop, when not the size


#: Resize is torchvision's default (bilinear). With ground-truth crops the image is squashed to
#: N x N; otherwise the shorter side becomes N and the centre N x N is kept. ImageNet's test
#: transform is Resize(256), CenterCrop(224) and no normalisation at all.
DATASETS: dict[str, AuthorsDataset] = {
    "CUB2011": AuthorsDataset((0.4853, 0.4964, 0.4295), (0.2300, 0.2258, 0.2625), True),
    "TravelingBirds": AuthorsDataset((0.4584, 0.4369, 0.3957), (0.2610, 0.2569, 0.2722), True),
    "StanfordCars": AuthorsDataset((0.4593, 0.4466, 0.4453), (0.2920, 0.2910, 0.2988), False),
    "ImageNet": AuthorsDataset((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False, 224, 256),
}


def eval_preprocessing(dataset: str, image_size: int, gt_crop: bool) -> PreprocessConfig:
    """The checkpoint preprocessing that reproduces the authors' test transform."""
    if dataset not in DATASETS:
        raise AuthorsCheckpointError(f"dataset {dataset!r}: choose one of {sorted(DATASETS)}")
    spec = DATASETS[dataset]
    if spec.fixed_size is not None and image_size != spec.fixed_size:
        raise AuthorsCheckpointError(
            f"--image-size {image_size}: the authors evaluate {dataset} at {spec.fixed_size} px only"
        )
    if gt_crop and not spec.has_boxes:
        raise AuthorsCheckpointError(
            f"ground-truth crops apply to CUB2011 and TravelingBirds, not to {dataset}"
        )
    resize_to = spec.resize_to or image_size
    return PreprocessConfig(
        input_size=(3, image_size, image_size),
        interpolation="bilinear",
        crop_mode="squash" if gt_crop else "center",
        crop_pct=image_size / resize_to,
        mean=spec.mean,
        std=spec.std,
    )


# -- reading the file ----------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name, read without running pickle code."""
    if not path.is_file():
        raise AuthorsCheckpointError(f"{path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise AuthorsCheckpointError(f"{path}: cannot be read ({e})") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AuthorsCheckpointError(
            f"{path}: not a PyTorch state_dict that can be read safely ({reason})"
        ) from None
    if not isinstance(data, Mapping):
        raise AuthorsCheckpointError(
            f"{path}: holds a {type(data).__name__}, not a state_dict (a mapping of tensors)"
        )
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise AuthorsCheckpointError(
                f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor; the file is "
                "not a model state_dict"
            )
    return dict(data)


def detect_architecture(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The authors' ResNet the backbone tensors describe (None when they match none)."""
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    counts = []
    for layer in range(1, 5):
        pattern = re.compile(rf"layer{layer}\.(\d+)\.")
        found = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
        counts.append(len(found))
    for arch, spec in ARCHITECTURES.items():
        if spec == (block, tuple(counts)):
            return arch
    return None


def _backbone_reference(arch: str) -> tuple[dict[str, torch.Tensor], int]:
    """The timm ResNet's tensors (names, shapes, dtypes) and its number of output channels."""
    from qpm_zoo.backbone import Backbone

    backbone = Backbone.create(arch)
    return backbone.model.state_dict(), backbone.num_features


@dataclass(frozen=True)
class AuthorsHead:
    """The interpretable layer as the authors store it."""

    selection: torch.Tensor  #: [n] selected channels
    weight: torch.Tensor  #: [C, n]
    mean: torch.Tensor  #: [n]
    std: torch.Tensor  #: [n]
    bias: torch.Tensor | None  #: [C], Q-SENN only

    @property
    def model_type(self) -> str:
        return "qsenn" if self.bias is not None else "qpm"


@dataclass(frozen=True)
class AuthorsCheckpoint:
    """An authors' file, checked key by key against the architecture it claims to be."""

    path: Path
    sha256: str
    arch: str
    num_features: int  #: channels of the backbone's feature maps
    backbone: dict[str, torch.Tensor]  #: timm key names, ready for the timm ResNet
    head: AuthorsHead


def _fail(path: Path, key: str, problem: str) -> AuthorsCheckpointError:
    return AuthorsCheckpointError(f"{path}: key '{key}' {problem}")


def _read_head(path: Path, tensors: Mapping[str, torch.Tensor], num_features: int) -> AuthorsHead:
    for key in (SELECTION_KEY, MEAN_KEY, STD_KEY, WEIGHT_KEY):
        if key not in tensors:
            raise _fail(path, key, "is missing: the file has no interpretable layer")
    selection = tensors[SELECTION_KEY]
    if selection.ndim != 1 or selection.numel() == 0:
        raise _fail(
            path, SELECTION_KEY, f"must be a non-empty vector, got {tuple(selection.shape)}"
        )
    if selection.is_floating_point() or selection.is_complex() or selection.dtype == torch.bool:
        raise _fail(path, SELECTION_KEY, f"must hold channel indices, got dtype {selection.dtype}")
    selection = selection.long()
    n = selection.numel()
    if int(selection.min()) < 0 or int(selection.max()) >= num_features:
        raise _fail(
            path, SELECTION_KEY, f"holds channels outside the backbone's 0..{num_features - 1}"
        )
    if selection.unique().numel() != n:
        raise _fail(path, SELECTION_KEY, "selects a channel twice")
    weight = tensors[WEIGHT_KEY]
    if weight.ndim != 2 or weight.shape[1] != n:
        raise _fail(path, WEIGHT_KEY, f"has shape {tuple(weight.shape)}, expected [classes, {n}]")
    num_classes = weight.shape[0]
    expected = {MEAN_KEY: (n,), STD_KEY: (n,), BIAS_KEY: (num_classes,)}
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != shape:
            raise _fail(path, key, f"has shape {tuple(tensors[key].shape)}, expected {list(shape)}")
    for key in (MEAN_KEY, STD_KEY, WEIGHT_KEY, BIAS_KEY):
        if key in tensors:
            value = tensors[key]
            if not value.is_floating_point():
                raise _fail(path, key, f"must hold floats, got dtype {value.dtype}")
            if not bool(torch.isfinite(value).all()):
                raise _fail(path, key, "holds NaN or infinite values")
    bias = tensors.get(BIAS_KEY)
    return AuthorsHead(
        selection=selection,
        weight=weight.float(),
        mean=tensors[MEAN_KEY].float(),
        std=tensors[STD_KEY].float(),
        bias=None if bias is None else bias.float(),
    )


def read_authors_checkpoint(path: str | Path, arch: str) -> AuthorsCheckpoint:
    """Read and check an authors' file for the given architecture (resnet18/34/50)."""
    path = Path(path)
    if arch not in ARCHITECTURES:
        raise AuthorsCheckpointError(
            f"architecture {arch!r}: the authors' backbones are {list(ARCHITECTURES)}"
        )
    tensors = read_state_dict(path)
    found = detect_architecture(tensors)
    if found is not None and found != arch:
        raise AuthorsCheckpointError(
            f"{path}: the backbone tensors are a {found} (key 'layer3.*' has "
            f"{ARCHITECTURES[found][1][2]} blocks of {ARCHITECTURES[found][0]} type), not a {arch}"
        )
    reference, num_features = _backbone_reference(arch)
    unknown = sorted(set(tensors) - set(reference) - set(HEAD_KEYS))
    if unknown:
        raise _fail(
            path, unknown[0], f"is not part of the authors' {arch} model; refusing the file"
        )
    missing = [key for key in reference if key not in tensors]
    if missing:
        raise _fail(path, missing[0], f"is missing ({len(missing)} {arch} tensors are)")
    backbone = {}
    for key, expected in reference.items():
        tensor = tensors[key]
        if tuple(tensor.shape) != tuple(expected.shape):
            raise _fail(
                path,
                key,
                f"has shape {tuple(tensor.shape)}, the {arch} has {tuple(expected.shape)}",
            )
        if tensor.is_floating_point() != expected.is_floating_point():
            raise _fail(path, key, f"has dtype {tensor.dtype}, expected {expected.dtype}")
        backbone[key] = tensor.to(expected.dtype)
    head = _read_head(path, tensors, num_features)
    return AuthorsCheckpoint(path, file_sha256(path), arch, num_features, backbone, head)


# -- labels ----------------------------------------------------------------------------------------
_INDEXED_LINE = re.compile(r"^(\d+)\s+(\S.*)$")
_FOLDER_NAME = re.compile(r"^\d+\.(.+)$")


def read_label_names(path: str | Path) -> list[str]:
    """Class names, one a line, in the model's class order.

    CUB's classes.txt is understood: "1 001.Black_footed_Albatross" gives "Black footed
    Albatross" (the leading ids are dropped only when the lines are numbered 1, 2, 3, ...).
    """
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise AuthorsCheckpointError(f"{path}: no such label file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AuthorsCheckpointError(f"{path}: cannot be read as a text file ({e})") from None
    lines = [line for line in lines if line]
    numbered = [_INDEXED_LINE.match(line) for line in lines]
    if (
        lines
        and all(numbered)
        and [int(m.group(1)) for m in numbered] == list(range(1, len(lines) + 1))
    ):
        lines = [m.group(2) for m in numbered]
    names = []
    for line in lines:
        folder = _FOLDER_NAME.match(line)
        names.append(folder.group(1).replace("_", " ") if folder else line)
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise AuthorsCheckpointError(
                f"{path}: class name {name!r} appears twice (line {i + 1})"
            )
        seen.add(name)
    return names


# -- conversion ------------------------------------------------------------------------------------
def convert(
    checkpoint: AuthorsCheckpoint,
    label_names: Sequence[str],
    *,
    reduced_strides: bool,
    preprocessing: PreprocessConfig,
    provenance: Provenance,
    model_type: str | None = None,
    per_class: int | None = None,
    training: dict | None = None,
) -> QPM:
    """The qpm-zoo model with the authors' weights (its outputs equal their model's)."""
    from qpm_zoo.backbone import Backbone
    from qpm_zoo.config import BackboneConfig
    from qpm_zoo.model import QPM

    head, path = checkpoint.head, checkpoint.path
    found = head.model_type
    model_type = model_type or found
    if model_type == "qpm" and found == "qsenn":
        raise _fail(path, BIAS_KEY, "is a class bias, which only Q-SENN has; this is not a QPM")
    if model_type == "qsenn" and found == "qpm":
        raise _fail(path, BIAS_KEY, "is missing: the authors' Q-SENN layer has a class bias")
    num_classes = head.weight.shape[0]
    if len(label_names) != num_classes:
        raise _fail(
            path, WEIGHT_KEY, f"has {num_classes} classes, the label file {len(label_names)} names"
        )
    k = _check_rows(path, head.weight, model_type, per_class)
    backbone = Backbone(
        BackboneConfig(
            name=checkpoint.arch,
            num_features=checkpoint.num_features,
            reduced_strides=reduced_strides,
        )
    )
    backbone.model.load_state_dict(checkpoint.backbone, strict=True)
    model = QPM.from_assignment(
        backbone,
        selected_features=head.selection.tolist(),
        weight=head.weight.numpy(),
        bias=None if head.bias is None else head.bias.numpy(),
        mean=head.mean.numpy(),
        std=head.std.numpy(),
        label_names=list(label_names),
        k=k,
        model_type=model_type,
        preprocessing=preprocessing,
        training=training,
    )
    model.set_config(model.config.replace(provenance=provenance))
    return model


def _check_rows(path: Path, weight: torch.Tensor, model_type: str, per_class: int | None) -> int:
    """k: every QPM class has exactly k weights of 1; a Q-SENN's k is its mean row size."""
    sizes = (weight != 0).sum(dim=1).tolist()
    if model_type == "qsenn":
        return per_class or max(1, round(sum(sizes) / len(sizes)))
    if not bool(((weight == 0) | (weight == 1)).all()):
        raise _fail(path, WEIGHT_KEY, "of a QPM must be binary (0 or 1), it holds other values")
    k = per_class if per_class is not None else sizes[0]
    wrong = [c for c, size in enumerate(sizes) if size != k]
    if wrong or k == 0:
        c = wrong[0] if wrong else 0
        raise _fail(
            path, WEIGHT_KEY, f"row {c} has {sizes[c]} features; every QPM class needs k={k}"
        )
    return k
