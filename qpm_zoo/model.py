"""`QPM`: the PyTorch model of a qpm-zoo checkpoint (QPM or Q-SENN head on a timm backbone)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from .backbone import Backbone
from .checkpoint import README_NAME, write_checkpoint
from .config import WEIGHTS_NAME, Assignment, PreprocessConfig, QPMConfig
from .errors import ConfigError
from .explain import InterpretableModel, ModelOutput
from .head import InterpretableHead
from .hub import CheckpointHubMixin, resolve_file
from .weights import load_weights_strict


class QPM(
    nn.Module,
    InterpretableModel,
    CheckpointHubMixin,
    PyTorchModelHubMixin,
    library_name="qpm-zoo",
    pipeline_tag="image-classification",
    tags=["qpm-zoo", "interpretability", "image-classification"],
    paper_url="https://openreview.net/forum?id=GlAeL0I8LX",
):
    """A globally interpretable image classifier.

    Every class is decided by a few features of the backbone (exactly k, weight 1, for QPM;
    signed weights and a bias for Q-SENN), so `predict` returns each prediction with its exact
    explanation and `explain_class` / `compare` describe the whole model.

    >>> model = QPM.from_pretrained("runs/demo/model")        # a folder or a Hub repo id
    >>> pred = model.predict("bird.jpg")
    >>> pred.label, pred.explanation.features[0].contribution
    """

    def __init__(self, config: QPMConfig | dict):
        super().__init__()
        if not isinstance(config, QPMConfig):
            config = QPMConfig.from_dict(config, source="config")
        self.config = config
        self.backbone = Backbone(config.backbone)
        _, height, width = config.preprocessing.input_size
        self.backbone.check_input(height, width)  # a fixed-size transformer takes only its size
        self.head = InterpretableHead(
            selection=np.asarray(config.selected_features),
            weight=config.weight_matrix(),
            bias=config.bias_vector(),
        )
        self.eval()

    # -- construction from training results ----------------------------------------------------
    @classmethod
    def from_assignment(
        cls,
        backbone: Backbone,
        selected_features: Sequence[int],
        weight: np.ndarray | Assignment,
        mean: np.ndarray,
        std: np.ndarray,
        label_names: Sequence[str],
        *,
        k: int | None = None,
        bias: np.ndarray | None = None,
        model_type: str | None = None,
        preprocessing: PreprocessConfig | None = None,
        feature_names: Sequence[str] | None = None,
        feature_descriptions: Sequence[str] | None = None,
        metrics: dict | None = None,
        training: dict | None = None,
    ) -> QPM:
        """Build a QPM around a (trained) backbone and the result of the assignment.

        `weight` is the [C, n] class-feature matrix over the selected features (binary for QPM;
        give `bias` and signed weights for Q-SENN) or an Assignment. `mean` and `std` are the
        selected features' training-set statistics. The backbone's weights are kept as they are.
        """
        if isinstance(weight, Assignment):
            if bias is not None:
                raise ConfigError("give the bias inside the Assignment, not beside it")
            assignment = weight
        else:
            assignment = Assignment.from_matrix(np.asarray(weight), bias)
        if model_type is None:
            model_type = "qpm" if assignment.class_weights is None else "qsenn"
        if k is None:
            sizes = [len(row) for row in assignment.class_features]
            k = max(1, round(sum(sizes) / len(sizes)))
        config = QPMConfig(
            model_type=model_type,
            backbone=backbone.config,
            num_classes=len(label_names),
            selected_features=tuple(int(i) for i in selected_features),
            k=int(k),
            assignment=assignment,
            label_names=tuple(label_names),
            preprocessing=preprocessing or PreprocessConfig(),
            feature_names=None if feature_names is None else tuple(feature_names),
            feature_descriptions=None
            if feature_descriptions is None
            else tuple(feature_descriptions),
            metrics=dict(metrics or {}),
            training=dict(training or {}),
        )
        model = cls(config)
        model.backbone.load_state_dict(backbone.state_dict())
        with torch.no_grad():
            model.head.mean.copy_(torch.as_tensor(np.asarray(mean, dtype=np.float32)))
            model.head.std.copy_(torch.as_tensor(np.asarray(std, dtype=np.float32)))
        return model

    # -- forward -------------------------------------------------------------------------------
    def forward_all(self, pixel_values: torch.Tensor) -> ModelOutput:
        """logits [B, C], normalised features [B, n] and the selected feature maps [B, n, h, w]."""
        return self.head(self.backbone(pixel_values))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_all(pixel_values).logits

    def forward_arrays(self, pixel_values: np.ndarray, with_maps: bool = False) -> ModelOutput:
        """forward_all on a numpy batch, in eval mode: numpy logits, features and (if asked) maps."""
        param = next(self.parameters())
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                x = torch.from_numpy(pixel_values).to(device=param.device, dtype=param.dtype)
                out = self.forward_all(x)
        finally:
            self.train(was_training)
        return ModelOutput(
            out.logits.float().cpu().numpy(),
            out.features.float().cpu().numpy(),
            out.feature_maps.float().cpu().numpy() if with_maps else None,
        )

    def set_config(self, config: QPMConfig) -> None:
        """Replace metadata (metrics, names, ...) of the config; the architecture must not change."""
        old, new = self.config.to_dict(), config.to_dict()
        fixed = ("model_type", "backbone", "num_classes", "selected_features", "assignment")
        changed = [key for key in fixed if old[key] != new[key]]
        if changed:
            raise ConfigError(f"set_config cannot change {changed}; build a new model instead")
        self.config = config

    # -- saving and loading --------------------------------------------------------------------
    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The README.md that save_pretrained / push_to_hub write: qpm-zoo's card (MODEL_CARD.md
        filled from this model's config) instead of huggingface_hub's generic one.

        Pass `model_card_kwargs={"repo_id": "org/name"}` to put the Hub id into the usage examples.
        """
        from .card import render_model_card

        repo_id = kwargs.pop("repo_id", None)
        if args or kwargs:
            raise TypeError(
                f"generate_model_card() takes only repo_id=, got {len(args)} positional and "
                f"{sorted(kwargs)}"
            )
        return ModelCard(render_model_card(self.config, repo_id))

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write the checkpoint (config.json, model.safetensors, README.md) into
        `save_directory` at once (see qpm_zoo.checkpoint); with `push_to_hub`, upload it too.

        The config written is `self.config` (without an ONNX record: model.onnx is not part of
        the torch model); `config` must not be given.
        """
        if config is not None:
            raise TypeError("save_pretrained() writes self.config; change it with set_config()")
        card = self.generate_model_card(**(model_card_kwargs or {}))
        write_checkpoint(
            save_directory,
            self.config.replace(onnx=None),
            weights=self,
            files={README_NAME: str(card)},
        )
        if push_to_hub:
            return self.push_to_hub(
                repo_id or Path(save_directory).name,
                model_card_kwargs=model_card_kwargs,
                **push_to_hub_kwargs,
            )
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        self.save_pretrained(save_directory)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        config: QPMConfig,
        config_path: Path,
        revision: str | None,
        cache_dir: str | os.PathLike | None,
        local_files_only: bool,
        token: str | bool | None,
        force_download: bool,
        map_location: str | torch.device = "cpu",
    ) -> QPM:
        """The weights, loaded strictly: a missing, unexpected, misshapen or non-finite tensor,
        or a head that disagrees with config.json, is a CheckpointError. Returned in eval mode
        on `map_location`."""
        weights_path = resolve_file(
            model_id,
            WEIGHTS_NAME,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
        )
        model = cls(config)
        load_weights_strict(model, weights_path, config)
        return model.to(map_location).eval()
