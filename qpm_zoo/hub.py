"""Find a checkpoint's files in a local folder or a Hugging Face Hub repository (torch-free),
and the one `from_pretrained` of every qpm-zoo model class.

Every failure becomes a CheckpointError that names the folder or repository, the file and the
revision, instead of the client's HTTP error from deep inside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelHubMixin

from .config import CONFIG_NAME, QPMConfig
from .errors import CheckpointError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11


class CheckpointHubMixin(ModelHubMixin):
    """`from_pretrained` for QPM, QPMOnnx and GlobalExplainer: config.json is found and parsed
    strictly here (a ConfigError, not huggingface_hub's lenient reading), then the class's
    `_from_pretrained(model_id=..., config=..., config_path=..., revision=..., ...)` hook loads
    the rest, with the same location arguments for every file it resolves."""

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
        **model_kwargs: Any,
    ) -> Self:
        """Load a checkpoint from a local folder or a Hub repository id, strictly.

        Raises CheckpointError (naming the file and the problem) for a missing or invalid
        config.json and for whatever the class's own files lack; `model_kwargs` are the
        class's loading options (see its `_from_pretrained`).
        """
        where = {
            "revision": revision,
            "cache_dir": cache_dir,
            "local_files_only": local_files_only,
            "token": token,
            "force_download": force_download,
        }
        config_path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, **where)
        return cls._from_pretrained(
            model_id=os.fspath(pretrained_model_name_or_path),
            config=QPMConfig.load(config_path),
            config_path=config_path,
            **where,
            **model_kwargs,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> str | None:
        """Only the PyTorch model writes checkpoints (QPM overrides this); refusing here, before
        huggingface_hub's version touches the folder, keeps an existing checkpoint intact."""
        raise CheckpointError(
            f"{type(self).__name__} cannot write a checkpoint; save the PyTorch model "
            "(QPM.save_pretrained) and export it with: python -m export onnx MODEL_DIR"
        )


def is_local(model_id: str | os.PathLike) -> bool:
    """A path that exists, or is written like a path, is local; anything else is a Hub id."""
    text = os.fspath(model_id)
    if os.path.exists(text):
        return True
    return (
        text.startswith((".", "/", "~"))
        or os.sep in text.rstrip(os.sep).split(os.sep, 1)[-1]  # more than one slash: a path
        or (os.altsep is not None and os.altsep in text)
    )


def resolve_file(
    model_id: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
    required: bool = True,
) -> Path | None:
    """The local path of `filename` in a checkpoint folder or Hub repository.

    With `required=False` a file the checkpoint does not have gives None; every other problem
    (no such folder or repository, unknown revision, no network) raises CheckpointError.
    """
    text = os.fspath(model_id)
    if is_local(text):
        folder = Path(text).expanduser()
        if not folder.exists():
            raise CheckpointError(f"{folder}: no such checkpoint folder")
        if not folder.is_dir():
            raise CheckpointError(
                f"{folder}: not a folder (a checkpoint is a folder with config.json)"
            )
        path = folder / filename
        if path.is_file():
            return path
        if required:
            raise CheckpointError(f"{path}: not found; a qpm-zoo checkpoint folder has {filename}")
        return None
    return _download(
        text, filename, revision, cache_dir, local_files_only, token, force_download, required
    )


def _download(
    repo_id: str,
    filename: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    token: str | bool | None,
    force_download: bool,
    required: bool,
) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    from .version import __version__

    where = f"Hub repository '{repo_id}'" + (f" at revision '{revision}'" if revision else "")
    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
                force_download=force_download,
                library_name="qpm-zoo",
                library_version=__version__,
            )
        )
    except HFValidationError as e:
        raise CheckpointError(
            f"{repo_id!r} is neither an existing folder nor a valid Hub repository id ({e})"
        ) from None
    except EntryNotFoundError as e:
        if isinstance(e, LocalEntryNotFoundError) or required:
            raise _download_error(e, where, filename) from None
        return None
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as e:
        raise _download_error(e, where, filename) from None
    except ValueError as e:
        # force_download wraps the HTTP error it met in a ValueError: report the real cause
        if e.__cause__ is not None:
            raise _download_error(e.__cause__, where, filename) from None
        raise


def _download_error(error: BaseException, where: str, filename: str) -> CheckpointError:
    """One clear sentence for what went wrong when downloading `filename`."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, RepositoryNotFoundError):
        return CheckpointError(
            f"{where}: repository not found (or private: pass token= / run `hf auth login`)"
        )
    if isinstance(error, RevisionNotFoundError):
        return CheckpointError(f"{where}: no such revision (branch, tag or commit)")
    if isinstance(error, LocalEntryNotFoundError):
        # offline or unreachable, and not in the cache: this is not "the file is missing"
        return CheckpointError(
            f"{where}: {filename} is not in the local cache and the Hub cannot be reached "
            "(offline mode or no network)"
        )
    if isinstance(error, EntryNotFoundError):
        return CheckpointError(f"{where}: the repository has no {filename}")
    if isinstance(error, OfflineModeIsEnabled):
        return CheckpointError(f"{where}: {filename} is not cached and HF_HUB_OFFLINE is set")
    return CheckpointError(f"{where}: downloading {filename} failed ({error})")
