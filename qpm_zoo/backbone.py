"""timm backbones cut before pooling: images → feature maps [B, F, h, w].

`reduced_strides` is the QPM paper's ResNet change: layer3 and layer4 keep stride 1 (and are
not dilated), so a 224 px image gives 28×28 maps instead of 7×7. timm's `output_stride=8` is a
different network (it dilates the convolutions), so it is not used for this.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import BackboneConfig, timm_kwargs
from .errors import ConfigError
from .limits import current_limits, variable_for

#: What timm raises when its model functions refuse their keyword arguments.
_TIMM_REFUSALS = (
    TypeError,
    ValueError,
    AssertionError,
    KeyError,
    RuntimeError,
    NotImplementedError,
)


def _options(name: str, kwargs: dict) -> dict[str, Any]:
    import timm

    if not timm.is_model(name):
        raise ConfigError(f"backbone '{name}' is not a timm model name (see timm.list_models())")
    try:
        options: dict[str, Any] = timm_kwargs(dict(kwargs))
    except ValueError as e:
        raise ConfigError(f"backbone '{name}': kwargs: {e}") from None
    options.update(num_classes=0, global_pool="")
    return options


def _meta_model(name: str, kwargs: dict) -> nn.Module:
    """The model without memory (on the meta device), refused when it has more parameters than
    the limit: what a config asks for is measured before anything is allocated."""
    import timm

    options = _options(name, kwargs)
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, **options)
    except _TIMM_REFUSALS as e:
        raise ConfigError(
            f"backbone '{name}': timm cannot build it with kwargs {kwargs} "
            f"({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
    count = sum(p.numel() for p in model.parameters())
    limit = current_limits().max_backbone_parameters
    if count > limit:
        raise ConfigError(
            f"backbone '{name}' with kwargs {kwargs} has {count:,} parameters, more than the "
            f"limit of {limit:,} (raise it with {variable_for('max_backbone_parameters')})"
        )
    return model


def check_backbone(name: str, kwargs: dict, reduced_strides: bool) -> int:
    """The number of features the backbone gives, after checking, without allocating it, that
    timm builds it from `kwargs` within the size limit and that `reduced_strides` applies:
    what a training config is checked with before any stage runs."""
    model = _meta_model(name, kwargs)
    if reduced_strides:
        reduce_strides(model, name)
    return int(model.num_features)


def _create_timm_model(
    name: str, kwargs: dict, pretrained: bool, pretrained_file: str | None
) -> nn.Module:
    import timm

    _meta_model(name, kwargs)  # the size limit and kwargs, before any memory is taken
    options = _options(name, kwargs)
    if pretrained_file is not None:
        options["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
    try:
        return timm.create_model(name, pretrained=pretrained, **options)
    except TypeError as e:
        raise ConfigError(f"backbone '{name}': invalid kwargs {kwargs} ({e})") from None


def reduce_strides(model: nn.Module, name: str = "backbone") -> None:
    """Set stride 1 in the first block of layer3 and layer4 of a timm ResNet, without dilation."""
    from timm.models.resnet import ResNet

    if not isinstance(model, ResNet):
        raise ConfigError(
            f"backbone '{name}': reduced_strides applies to ResNets (layer3/layer4), "
            f"not to {type(model).__name__}"
        )
    for layer_name in ("layer3", "layer4"):
        block = getattr(model, layer_name)[0]
        if getattr(block, "aa", None) is not None and not isinstance(block.aa, nn.Identity):
            raise ConfigError(
                f"backbone '{name}': reduced_strides does not support anti-aliased blocks"
            )
        for module in block.modules():
            if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
                module.stride = (1, 1)
        downsample = getattr(block, "downsample", None)
        if isinstance(downsample, nn.Sequential):
            for i, module in enumerate(downsample):
                if isinstance(module, nn.AvgPool2d):  # ResNet-D style average-pool shortcut
                    downsample[i] = nn.Identity()


class Backbone(nn.Module):
    """The feature extractor of a QPM: a timm model without its pooling and classifier."""

    def __init__(self, config: BackboneConfig, *, _model: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.model = (
            _model
            if _model is not None
            else _create_timm_model(config.name, config.kwargs, False, None)
        )
        if config.reduced_strides:
            reduce_strides(self.model, config.name)
        found = int(self.model.num_features)
        if found != config.num_features:
            raise ConfigError(
                f"backbone '{config.name}' gives {found} features, the config says {config.num_features}"
            )

    @classmethod
    def create(
        cls,
        name: str,
        *,
        reduced_strides: bool = False,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        **kwargs: Any,
    ) -> Backbone:
        """Build a backbone by timm name (optionally with pretrained weights, from timm or a file)."""
        model = _create_timm_model(name, kwargs, pretrained, pretrained_file)
        config = BackboneConfig(
            name=name,
            num_features=int(model.num_features),
            kwargs=kwargs,
            reduced_strides=reduced_strides,
        )
        return cls(config, _model=model)

    @property
    def num_features(self) -> int:
        return self.config.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)
