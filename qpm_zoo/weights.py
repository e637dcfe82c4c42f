"""Strict reading and writing of model.safetensors (never pickle).

Loading checks, before any tensor is copied into the model: the file is a complete safetensors
file, it holds exactly the tensors the model built from config.json expects, each with the
expected shape and a compatible dtype, and the interpretable layer's tensors agree with the
assignment written in config.json. Any failure is a CheckpointError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import QPMConfig
from .errors import CheckpointError


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on the CPU; a damaged file is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    if size < 8:
        raise CheckpointError(f"{path}: truncated ({size} bytes); not a safetensors file")
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as e:
        raise CheckpointError(
            f"{path}: not a valid safetensors file (truncated or another format: {e})"
        ) from None
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({e})") from None


def load_weights_strict(model: nn.Module, path: Path, config: QPMConfig) -> None:
    """Fill `model` from `path`, or raise without having changed any of its tensors."""
    tensors = read_tensors(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing tensor(s): {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s): {_listing(unexpected)}")
        raise CheckpointError(
            f"{path}: does not match the model config.json describes ({'; '.join(problems)})"
        )
    for name, tensor in tensors.items():
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{path}: tensor '{name}' has shape {tuple(tensor.shape)}, but the model built from "
                f"config.json expects {tuple(want.shape)}"
            )
        if tensor.dtype.is_floating_point != want.dtype.is_floating_point:
            raise CheckpointError(
                f"{path}: tensor '{name}' has dtype {tensor.dtype}, expected {want.dtype}"
            )
        if tensor.dtype.is_floating_point and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor '{name}' holds NaN or infinite values")
    _check_head_against_config(tensors, path, config)
    _check_std(tensors, path)
    model.load_state_dict(tensors, strict=True)


def _check_head_against_config(
    tensors: dict[str, torch.Tensor], path: Path, config: QPMConfig
) -> None:
    selection = tensors["head.selection"].numpy()
    if not np.array_equal(selection, np.asarray(config.selected_features)):
        raise CheckpointError(
            f"{path}: tensor 'head.selection' disagrees with config.json 'selected_features'"
        )
    weight = tensors["head.weight"].float().numpy()
    if not np.array_equal(weight, config.weight_matrix()):
        raise CheckpointError(
            f"{path}: tensor 'head.weight' disagrees with config.json 'assignment'"
        )
    bias = config.bias_vector()
    if bias is not None and not np.array_equal(tensors["head.bias"].float().numpy(), bias):
        raise CheckpointError(
            f"{path}: tensor 'head.bias' disagrees with config.json 'assignment.bias'"
        )


def _check_std(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """The features' standard deviations divide them: one of 0 (or below) would make the
    normalised feature, and the logit, a million times too large."""
    std = tensors["head.std"].float()
    low = torch.nonzero(std <= 0).flatten()
    if len(low):
        j = int(low[0])
        raise CheckpointError(
            f"{path}: tensor 'head.std' holds {float(std[j])} at feature {j}; standard "
            "deviations must be positive"
        )


def save_weights(model: nn.Module, path: Path) -> None:
    """Write the model's state dict as safetensors (into the temporary folder write_checkpoint
    renames into place, so a reader never sees a partial file)."""
    from safetensors.torch import save_file

    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
