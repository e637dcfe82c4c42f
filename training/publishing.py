"""Publishing a checkpoint folder on the Hugging Face Hub: check it as a user would load it,
regenerate its model card, upload it in one commit (the `publish` command's library)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qpm_zoo.card import README_NAME, RecipeMetadata, render_model_card
from qpm_zoo.config import CONFIG_NAME, WEIGHTS_NAME, QPMConfig, write_text_atomic
from qpm_zoo.errors import QPMError
from qpm_zoo.version import __version__

DEFAULT_REVISION = "main"


class PublishError(QPMError):
    """The checkpoint cannot be published, or the Hub refused the upload."""


def check_license(config: QPMConfig, folder: Path) -> None:
    """Weights made by others (a `provenance`) are published only under an explicit license:
    the authors' releases state none, so no default can be assumed for them."""
    if config.provenance is None:
        return
    if RecipeMetadata.from_training(config.training).license is None:
        raise PublishError(
            f"{folder}: the weights were converted from {config.provenance.file} "
            f"({config.provenance.source}), whose terms are not stated (the authors' repository "
            "has no licence file); set training.publish.license in config.json (import-authors "
            "--license) to the license you may publish them under"
        )


@dataclass(frozen=True)
class UploadFile:
    """One file of the commit."""

    name: str  #: path in the repository
    path: Path  #: where it is on disk
    size: int
    regenerated: bool = False  #: README.md, written from the template just now


@dataclass(frozen=True)
class PublishPlan:
    """What `publish` will upload, known before any server is contacted."""

    folder: Path
    repo_id: str
    revision: str
    config: QPMConfig
    card: str  #: the regenerated README.md
    files: tuple[UploadFile, ...]


@dataclass(frozen=True)
class PublishResult:
    commit_url: str
    commit_oid: str
    repo_url: str


def check_checkpoint(folder: Path) -> tuple[QPMConfig, list[str]]:
    """The config and the repository paths of the checkpoint's files, without loading weights.

    Raises PublishError listing every problem: a missing or unparsable config.json, a missing
    model.safetensors, an ONNX export that config.json does not record (or records but is
    missing or differs). `verify_weights` checks the weights themselves.
    """
    if not folder.exists():
        raise PublishError(f"{folder}: no such checkpoint folder")
    if not folder.is_dir():
        raise PublishError(f"{folder}: not a folder (a checkpoint is a folder with {CONFIG_NAME})")
    problems: list[str] = []
    config = None
    if not (folder / CONFIG_NAME).is_file():
        problems.append(f"{CONFIG_NAME} is missing")
    else:
        try:
            config = QPMConfig.load(folder / CONFIG_NAME)
        except QPMError as e:
            problems.append(str(e))
    if not (folder / WEIGHTS_NAME).is_file():
        problems.append(f"{WEIGHTS_NAME} is missing")
    names = [CONFIG_NAME, WEIGHTS_NAME]
    if config is not None:
        onnx_name, onnx_problems = _check_onnx(folder, config)
        problems += onnx_problems
        if onnx_name is not None:
            names.append(onnx_name)
    if problems:
        _refuse(folder, problems)
    return config, names


def _refuse(folder: Path, problems: list[str]) -> None:
    listing = "\n".join(f"  - {p}" for p in problems)
    raise PublishError(
        f"{folder}: not a complete qpm-zoo checkpoint, nothing was uploaded:\n{listing}"
    )


def _check_onnx(folder: Path, config: QPMConfig) -> tuple[str | None, list[str]]:
    """The export's path in the checkpoint (None without one) and what is wrong with it."""
    from qpm_zoo.onnx_model import OnnxRecord, file_sha256

    on_disk = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.onnx") if p.is_file()
    )
    if config.onnx is None:
        return None, [
            f"{name} is not recorded in {CONFIG_NAME} (no 'onnx' entry); export with "
            "`python -m export onnx MODEL_DIR` (it validates and records the graph), or remove it"
            for name in on_disk
        ]
    try:
        record = OnnxRecord.from_config(config, str(folder / CONFIG_NAME))
    except QPMError as e:
        return None, [str(e)]
    problems = [
        f"{name} is not the export {CONFIG_NAME} records ('{record.file}'); remove it"
        for name in on_disk
        if name != record.file
    ]
    path = folder / record.file
    if not path.is_file():
        problems.append(
            f"{record.file} is missing, but {CONFIG_NAME} records an ONNX export ('onnx')"
        )
    elif file_sha256(path) != record.sha256:
        problems.append(
            f"{record.file} differs from the export {CONFIG_NAME} records (SHA-256 mismatch); "
            "export again with `python -m export onnx MODEL_DIR`"
        )
    return record.file, problems


def verify_weights(folder: Path) -> None:
    """Load the checkpoint strictly, as a user's from_pretrained will (PublishError if it fails)."""
    from qpm_zoo.model import QPM

    try:
        QPM.from_pretrained(folder)
    except QPMError as e:
        _refuse(folder, [str(e)])


def plan_publish(folder: Path, repo_id: str, revision: str = DEFAULT_REVISION) -> PublishPlan:
    """Check the repo id and the folder's files and render the card (fast: no weights are loaded,
    nothing is written or sent)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"{repo_id!r} is not a valid Hub repository id ({e})") from None
    config, names = check_checkpoint(folder)
    check_license(config, folder)  # weights made by others need an explicit license
    card = render_model_card(config, repo_id)
    files = [UploadFile(name, folder / name, (folder / name).stat().st_size) for name in names]
    files.append(UploadFile(README_NAME, folder / README_NAME, len(card.encode("utf-8")), True))
    return PublishPlan(folder, repo_id, revision, config, card, tuple(files))


def publish(
    plan: PublishPlan,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> PublishResult:
    """Check the weights, write README.md, then upload the plan's files in one commit.

    A missing token fails first (before the slow weight check); the repository is created if
    needed (`private` applies only then) and so is the branch `plan.revision`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = token or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`"
        )
    verify_weights(plan.folder)
    write_text_atomic(plan.folder / README_NAME, plan.card)
    api = HfApi(token=token, library_name="qpm-zoo", library_version=__version__)
    message = commit_message or (
        f"Publish {plan.config.model_type} checkpoint ({plan.config.backbone.name}, "
        f"{plan.config.num_classes} classes) with qpm-zoo {__version__}"
    )
    with hub_errors(api.endpoint, plan.repo_id, plan.revision):
        repo_url = api.create_repo(plan.repo_id, private=private, exist_ok=True)
        if plan.revision != DEFAULT_REVISION:
            api.create_branch(plan.repo_id, branch=plan.revision, exist_ok=True)
        info = api.create_commit(
            plan.repo_id,
            operations=[CommitOperationAdd(f.name, str(f.path)) for f in plan.files],
            commit_message=message,
            revision=plan.revision,
        )
    return PublishResult(commit_url=info.commit_url, commit_oid=info.oid, repo_url=str(repo_url))


@contextmanager
def hub_errors(endpoint: str, repo_id: str, revision: str) -> Iterator[None]:
    """Turns the client's HTTP and connection errors into one-line PublishErrors."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    where = f"{endpoint}/{repo_id}" + (
        f" (branch {revision})" if revision != DEFAULT_REVISION else ""
    )
    try:
        yield
    except HfHubHTTPError as e:
        status = None if e.response is None else e.response.status_code
        detail = f" ({e.server_message.strip()})" if e.server_message else ""
        if status == 401:
            raise PublishError(
                f"{where}: the Hub rejected the token (401 Unauthorized){detail}; check --token / "
                "HF_TOKEN: it must be valid and have write access"
            ) from None
        if status == 403:
            raise PublishError(
                f"{where}: the token may not write here (403 Forbidden){detail}"
            ) from None
        raise PublishError(f"{where}: upload failed ({status}){detail}") from None
    except httpx2.TransportError as e:
        raise PublishError(f"cannot reach the Hub at {endpoint} ({e})") from None
    except (ValueError, RuntimeError, OSError) as e:  # e.g. a refused LFS upload, wrapped
        detail = " ".join(f"{e}{f': {e.__cause__}' if e.__cause__ else ''}".split())
        raise PublishError(f"{where}: upload failed ({detail})") from None
