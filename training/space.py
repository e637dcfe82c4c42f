"""A Hugging Face Space per published model: the explanation explorer (`qpm_zoo.app`) served
against the model repository, as three files (app.py, requirements.txt, README.md with the
Space's front matter) committed to a Space repository (`publish --space`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qpm_zoo.card import RecipeMetadata
from qpm_zoo.config import QPMConfig
from qpm_zoo.version import __version__

if TYPE_CHECKING:
    from .publishing import PublishResult

#: The Gradio release the explorer is tested with (the `[app]` extra pins the same).
GRADIO_VERSION = "6.31.0"
APP_FILE = "app.py"
REQUIREMENTS_FILE = "requirements.txt"
README_FILE = "README.md"

_APP_TEMPLATE = '''"""The qpm-zoo explanation explorer for {model_repo} (written by `python -m training publish
--space`): upload an image, see the prediction and its k features with their heatmaps and exact
contributions, browse each class's explanation, compare two classes."""

from qpm_zoo.app import load_model, serve

MODEL = {model_repo!r}
REVISION = {revision!r}

if __name__ == "__main__":
    # host and port: None lets Gradio take GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (a Space sets them)
    serve(load_model(MODEL, revision=REVISION, onnx={onnx!r}), host=None, port=None)
'''


@dataclass(frozen=True)
class SpaceFiles:
    """The Space's files, as text, known before anything is sent."""

    model_repo: str
    revision: str
    onnx: bool  #: serve model.onnx with onnxruntime (torch-free) rather than the PyTorch model
    files: dict[str, str]  #: path in the Space repository → content


def space_files(config: QPMConfig, model_repo: str, revision: str = "main") -> SpaceFiles:
    """The Space that serves `model_repo` at `revision`: the ONNX export when the checkpoint has
    one (a lighter, torch-free Space), else the PyTorch model."""
    from huggingface_hub import SpaceCardData

    onnx = config.onnx is not None
    backend = "onnx" if onnx else "torch"
    recipe = RecipeMetadata.from_training(config.training)
    card = SpaceCardData(
        title=f"{config.model_type.upper()} explorer: {model_repo.split('/')[-1]}",
        sdk="gradio",
        sdk_version=GRADIO_VERSION,
        app_file=APP_FILE,
        license=recipe.license,
        models=[model_repo],
        tags=["qpm-zoo", "interpretability", config.model_type],
        emoji="🔍",
        colorFrom="red",
        colorTo="blue",
        pinned=False,
        short_description=f"Explanations of {model_repo}, feature by feature",
    )
    readme = (
        f"---\n{card.to_yaml()}\n---\n\n"
        f"# Explanation explorer for [{model_repo}](https://huggingface.co/{model_repo})\n\n"
        f"A {config.model_type.upper()} on `{config.backbone.name}` with {config.num_classes} "
        f"classes, each decided by {config.k} of {config.n_features} features. Upload an image "
        "to see the prediction with each feature's heatmap and its exact share of the logit; "
        "browse a class's features and the classes that share them; compare two classes.\n\n"
        f"The same page runs locally: `pip install 'qpm-zoo[app,{backend}]'` then "
        f"`qpm app {model_repo}{' --onnx' if onnx else ''}`.\n"
    )
    return SpaceFiles(
        model_repo=model_repo,
        revision=revision,
        onnx=onnx,
        files={
            APP_FILE: _APP_TEMPLATE.format(model_repo=model_repo, revision=revision, onnx=onnx),
            REQUIREMENTS_FILE: f"qpm-zoo[app,{backend}]=={__version__}\n",
            README_FILE: readme,
        },
    )


def check_space_repo(space_repo: str) -> None:
    """PublishError for an invalid Space id, before anything is uploaded."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from .publishing import PublishError

    try:
        validate_repo_id(space_repo)
    except HFValidationError as e:
        raise PublishError(
            f"--space {space_repo!r} is not a valid Space repository id ({e})"
        ) from None


def upload_space(
    space: SpaceFiles,
    space_repo: str,
    *,
    token: str | None = None,
    private: bool = False,
) -> PublishResult:
    """Create the Space (Gradio SDK) if needed and commit its files in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    from .publishing import PublishError, PublishResult, hub_errors

    token = token or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`"
        )
    api = HfApi(token=token, library_name="qpm-zoo", library_version=__version__)
    with hub_errors(api.endpoint, f"spaces/{space_repo}", "main"):
        repo_url = api.create_repo(
            space_repo, repo_type="space", space_sdk="gradio", private=private, exist_ok=True
        )
        info = api.create_commit(
            space_repo,
            repo_type="space",
            operations=[
                CommitOperationAdd(name, text.encode("utf-8")) for name, text in space.files.items()
            ],
            commit_message=f"Explanation explorer for {space.model_repo} (qpm-zoo {__version__})",
        )
    return PublishResult(commit_url=info.commit_url, commit_oid=info.oid, repo_url=str(repo_url))
