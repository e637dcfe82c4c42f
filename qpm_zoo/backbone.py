"""timm backbones cut before pooling: images → feature maps [B, F, h, w].

Every timm model with spatial output is one (docs/method.md §8): CNNs give their maps as they
are, channels-last models (Swin) are permuted, and vision transformers (ViT, DeiT, DINOv2 with
or without registers, DINOv3, EVA, BEiT; not timm's distilled DeiTs, which refuse to be built
without their head) give their patch tokens on the patch grid: timm's own
`forward_intermediates(..., output_fmt="NCHW")` drops the class and register tokens and
reshapes by the model's patch size and the actual input size (with `dynamic_img_size`, any size
the patch size divides). An optional adapter (qpm_zoo.adapter) maps them to QPM's features.

`reduced_strides` is the QPM paper's ResNet change: layer3 and layer4 keep stride 1 (and are
not dilated), so a 224 px image gives 28×28 maps instead of 7×7. timm's `output_stride=8` is a
different network (it dilates the convolutions), so it is not used for this.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .adapter import Adapter
from .config import AdapterConfig, BackboneConfig, timm_kwargs
from .errors import ConfigError
from .limits import current_limits, variable_for

#: How a timm model's `forward_features` lays out its output (see `map_layout`).
MAPS, CHANNELS_LAST, TOKENS = "maps", "channels_last", "tokens"

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


def map_layout(model: nn.Module) -> str:
    """TOKENS for transformers that give [B, N, D] token sequences (class, register and patch
    tokens), CHANNELS_LAST for models that give [B, h, w, D] (timm's `output_fmt` 'NHWC', e.g.
    Swin), MAPS for [B, D, h, w] (CNNs)."""
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "forward_intermediates"):
        return TOKENS
    if getattr(model, "output_fmt", "NCHW") == "NHWC":
        return CHANNELS_LAST
    return MAPS


def token_grid(
    model: nn.Module, height: int, width: int, name: str = "backbone"
) -> tuple[int, int]:
    """The patch grid a transformer gives for an input of `height` × `width` pixels, or a
    ConfigError when it does not take that size (a fixed-size model, or a side the patch size
    does not divide without `dynamic_img_pad`)."""
    embed = model.patch_embed
    if getattr(model, "dynamic_img_size", False):
        patch = tuple(embed.patch_size)
        if not getattr(embed, "dynamic_img_pad", False) and (height % patch[0] or width % patch[1]):
            raise ConfigError(
                f"backbone '{name}': input {height}×{width} px is not a multiple of its patch "
                f"size {list(patch)} (set kwargs.dynamic_img_pad: true to pad)"
            )
        return tuple(embed.dynamic_feat_size((height, width)))
    if tuple(embed.img_size) != (height, width):
        raise ConfigError(
            f"backbone '{name}': takes {list(embed.img_size)} px inputs, not {height}×{width} "
            "(set kwargs.img_size to the input size, or kwargs.dynamic_img_size: true)"
        )
    return tuple(embed.grid_size)


def _check_size(count: int, what: str) -> None:
    limit = current_limits().max_backbone_parameters
    if count > limit:
        raise ConfigError(
            f"{what} has {count:,} parameters, more than the limit of {limit:,} (raise it "
            f"with {variable_for('max_backbone_parameters')})"
        )


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
    _check_size(
        sum(p.numel() for p in model.parameters()), f"backbone '{name}' with kwargs {kwargs}"
    )
    return model


def check_backbone(
    name: str,
    kwargs: dict,
    reduced_strides: bool,
    input_size: int | None = None,
    adapter: AdapterConfig | None = None,
) -> int:
    """The number of features the backbone gives (the adapter's, if it has one), after checking,
    without allocating it, that timm builds it from `kwargs` within the size limit (adapter
    included), that `reduced_strides` applies and that a transformer takes `input_size` px
    inputs: what a training config is checked with before any stage runs."""
    model = _meta_model(name, kwargs)
    if reduced_strides:
        reduce_strides(model, name)
    if input_size is not None and map_layout(model) == TOKENS:
        token_grid(model, input_size, input_size, name)
    if adapter is None:
        return int(model.num_features)
    _check_adapter(model, adapter, name)
    return adapter.features


def _check_adapter(model: nn.Module, adapter: AdapterConfig, name: str) -> None:
    trunk = sum(p.numel() for p in model.parameters())
    extra = adapter.parameter_count(int(model.num_features))
    _check_size(trunk + extra, f"backbone '{name}' with its {adapter.kind} adapter")


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
    """The feature extractor of a QPM: a timm model without its pooling and classifier (the
    trunk, `model`), and optionally the adapter on its maps (`adapter`).

    `forward` gives the maps the interpretable layer reads: `adapter(trunk_maps(x))`, or the
    trunk's maps when there is no adapter.
    """

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
        self.layout = map_layout(self.model)
        self.trunk_frozen = False
        found = int(self.model.num_features)
        if found != config.num_features:
            raise ConfigError(
                f"backbone '{config.name}' gives {found} features, the config says {config.num_features}"
            )
        self.adapter = None
        if config.adapter is not None:
            _check_adapter(self.model, config.adapter, config.name)  # before it is allocated
            self.adapter = Adapter(config.adapter, found)

    @classmethod
    def create(
        cls,
        name: str,
        *,
        reduced_strides: bool = False,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        adapter: AdapterConfig | None = None,
        **kwargs: Any,
    ) -> Backbone:
        """Build a backbone by timm name (optionally with pretrained weights, from timm or a
        file, and an adapter with fresh weights)."""
        model = _create_timm_model(name, kwargs, pretrained, pretrained_file)
        config = BackboneConfig(
            name=name,
            num_features=int(model.num_features),
            kwargs=kwargs,
            reduced_strides=reduced_strides,
            adapter=adapter,
        )
        return cls(config, _model=model)

    @property
    def num_features(self) -> int:
        """Channels of the maps `forward` gives (the adapter's features, if it has one)."""
        return self.config.map_channels

    def check_input(self, height: int, width: int) -> None:
        """ConfigError unless the trunk takes `height` × `width` inputs (transformers of a fixed
        size take only theirs; CNNs take any)."""
        if self.layout == TOKENS:
            token_grid(self.model, height, width, self.config.name)

    def freeze_trunk(self) -> None:
        """Stop training the timm model: its parameters get no gradients and it stays in eval
        mode (batch-norm statistics and dropout as trained), while the adapter trains."""
        self.trunk_frozen = True
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.trunk_frozen:
            self.model.eval()
        return self

    def trunk_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The timm model's maps [B, D, h, w] (patch tokens on their grid for transformers)."""
        if self.layout == TOKENS:
            (maps,) = self.model.forward_intermediates(
                x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
            )
            return maps
        maps = self.model.forward_features(x)
        return maps.permute(0, 3, 1, 2) if self.layout == CHANNELS_LAST else maps

    def adapt(self, trunk_maps: torch.Tensor) -> torch.Tensor:
        """The adapter's maps on the trunk's (the trunk's themselves without an adapter)."""
        return trunk_maps if self.adapter is None else self.adapter(trunk_maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapt(self.trunk_maps(x))
