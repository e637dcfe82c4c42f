"""The one writer of a checkpoint folder: config.json, the weights and the files beside them.

A checkpoint is written whole into a temporary sibling folder that then takes the old folder's
place, so readers (and a crash) see the old checkpoint or the new one, never a mix: no
config.json describing weights that are not written yet, and no README.md, metrics.json or
ONNX export left over from another model. Torch-free unless weights are given.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_folder
from .config import CONFIG_NAME, WEIGHTS_NAME, QPMConfig, inside_checkpoint
from .errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

README_NAME = "README.md"
METRICS_NAME = "metrics.json"

#: Files that describe one particular model: a new checkpoint never inherits them from the
#: folder it replaces unless asked to (other files, e.g. a training run's notes, are kept).
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, README_NAME, METRICS_NAME)


def _is_model_file(relative: str) -> bool:
    return relative in MODEL_FILES or relative.endswith(".onnx")


def write_checkpoint(
    folder: str | os.PathLike,
    config: QPMConfig,
    *,
    weights: nn.Module | None = None,
    files: Mapping[str, bytes | str] | None = None,
    keep: Collection[str] = (),
) -> Path:
    """Write `config` (as config.json), `weights` (a module's state dict as model.safetensors)
    and `files` (relative path → content) as the checkpoint in `folder`, atomically.

    Of the files already in `folder` (relative paths), those in `keep` are carried into the new
    checkpoint when it does not write them itself; other model files (MODEL_FILES and any
    .onnx) are dropped, and everything else is carried over. Returns `folder`.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder; a checkpoint is a folder")
    files = dict(files or {})
    for name in files:
        _check_relative(name)
    if {CONFIG_NAME, WEIGHTS_NAME} & set(files):
        raise CheckpointError(
            f"{folder}: config.json and model.safetensors are written from `config` and "
            "`weights`, not from `files`"
        )
    written = {CONFIG_NAME, *files} | ({WEIGHTS_NAME} if weights is not None else set())
    with atomic_folder(folder) as new:
        for name in _carried(folder, keep, written):
            _link_or_copy(folder / name, new / name)
        if weights is not None:
            from .weights import save_weights

            save_weights(weights, new / WEIGHTS_NAME)
        for name, content in files.items():
            path = new / name
            path.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode("utf-8") if isinstance(content, str) else content
            path.write_bytes(data)
        config.save(new / CONFIG_NAME)
    return folder


def _check_relative(name: str) -> None:
    try:
        inside_checkpoint(name)
    except ValueError as e:
        raise CheckpointError(f"files: {e}") from None


def _carried(folder: Path, keep: Collection[str], written: set[str]) -> list[str]:
    """The existing files (relative posix paths) the new checkpoint takes over."""
    if not folder.is_dir():
        return []
    existing = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return [
        name
        for name in existing
        if name not in written and (name in keep or not _is_model_file(name))
    ]


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no copy of large weights) where the file system allows one, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
