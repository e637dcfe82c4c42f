"""Publishing to the Hub: `python -m training publish` and `QPM.push_to_hub` against a Hub-protocol
server on 127.0.0.1 (tests/hub/upload_server.py), checked by downloading back with the real client.

The client runs in subprocesses (tests/hub/client.py) because it reads HF_ENDPOINT and
HF_HUB_DISABLE_XET at import; a folder that cannot be published is refused in-process, before
any server is contacted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hub.client import hub_env, json_result, run_module, run_python
from hub.data import METRICS, exported_checkpoint, random_images
from hub.upload_server import HubTestServer
from huggingface_hub import ModelCard

from training.cli import main as training_main

TOKEN = "hf_test_write_token"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hub():
    with HubTestServer(tokens={TOKEN: "tester"}) as server:
        yield server


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A QPM checkpoint with metrics, a recipe and its ONNX export, as the pipeline leaves it."""
    return exported_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    return random_images(
        tmp_path_factory.mktemp("publish-images"), 5, [(70, 90), (64, 64), (120, 80)]
    )


@pytest.fixture(scope="module")
def published(hub, checkpoint, tmp_path_factory) -> dict:
    """`python -m training publish CHECKPOINT org/qpm-tiny --json`, as a user runs it."""
    env = hub_env(hub.url, tmp_path_factory.mktemp("hf-home-publish"), token=TOKEN)
    result = run_module(["training", "publish", str(checkpoint), "org/qpm-tiny", "--json"], env)
    return json_result(result)


def files_at(hub: HubTestServer, repo_id: str, revision: str) -> dict:
    repo = hub.state.repos[repo_id]
    return repo.resolve(revision).files


# -- publish, then download back with the real client ------------------------------------------
def test_publish_prints_the_commit_and_uploads_the_checkpoint(hub, published, checkpoint):
    head = hub.state.repos["org/qpm-tiny"].branches["main"]
    assert published["commit_oid"] == head
    assert published["commit_url"] == f"{hub.url}/org/qpm-tiny/commit/{head}"
    names = ["config.json", "model.safetensors", "model.onnx", "README.md"]
    assert [f["name"] for f in published["files"]] == names
    files = files_at(hub, "org/qpm-tiny", "main")
    assert set(files) == {".gitattributes", *names}
    assert files["model.safetensors"].is_lfs and files["model.onnx"].is_lfs
    assert not files["config.json"].is_lfs and not files["README.md"].is_lfs
    assert files["model.safetensors"].sha256 == sha256(checkpoint / "model.safetensors")
    assert not [r for r in hub.state.requests if r.status >= 500]


def test_published_card_is_regenerated_and_valid(hub, published, checkpoint):
    readme = (checkpoint / "README.md").read_text()
    served = hub.state.content(files_at(hub, "org/qpm-tiny", "main")["README.md"]).decode()
    assert served == readme, "README.md in the folder is the card that was uploaded"
    card = ModelCard(served)
    assert card.data.library_name == "qpm-zoo"
    assert card.data.license == "apache-2.0"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == METRICS
    assert 'QPM.from_pretrained("org/qpm-tiny")' in served
    assert 'QPMOnnx.from_pretrained("org/qpm-tiny"' in served
    assert "pushed to the Hub using the [PytorchModelHubMixin]" not in served


def test_download_back_gives_identical_bytes_and_predictions(
    hub, published, checkpoint, images, tmp_path
):
    names = ["config.json", "model.safetensors", "model.onnx", "README.md"]
    code = f"""
        import hashlib, json, os
        from huggingface_hub import hf_hub_download, snapshot_download
        from qpm_zoo.model import QPM
        from qpm_zoo.onnx_model import QPMOnnx

        digests = {{}}
        for name in {names!r}:
            with open(hf_hub_download("org/qpm-tiny", name), "rb") as fh:
                digests[name] = hashlib.sha256(fh.read()).hexdigest()
        snapshot = sorted(os.listdir(snapshot_download("org/qpm-tiny")))
        cpu = ["CPUExecutionProvider"]
        models = {{
            "hub": QPM.from_pretrained("org/qpm-tiny"),
            "local": QPM.from_pretrained({str(checkpoint)!r}),
            "hub onnx": QPMOnnx.from_pretrained("org/qpm-tiny", providers=cpu),
            "local onnx": QPMOnnx.from_pretrained({str(checkpoint)!r}, providers=cpu),
        }}
        predictions = {{name: [p.to_dict() for p in model.predict({images!r})]
                       for name, model in models.items()}}
        print(json.dumps({{"sha256": digests, "snapshot": snapshot, "predictions": predictions}}))
    """
    out = json_result(run_python(code, hub_env(hub.url, tmp_path / "home")))
    assert out["sha256"] == {name: sha256(checkpoint / name) for name in names}
    assert out["snapshot"] == sorted([".gitattributes", *names])
    predictions = out["predictions"]
    assert len(predictions["hub"]) == 3
    assert predictions["hub"] == predictions["local"]
    assert predictions["hub onnx"] == predictions["local onnx"]


def test_unknown_repo_and_revision_are_clear_errors(hub, published, tmp_path):
    env = hub_env(hub.url, tmp_path / "home")
    cases = [
        (["org/absent", "Cardinal"], "Hub repository 'org/absent': repository not found"),
        (
            ["org/qpm-tiny", "Cardinal", "--revision", "v404"],
            "Hub repository 'org/qpm-tiny' at revision 'v404': no such revision",
        ),
    ]
    for args, message in cases:
        result = run_module(["qpm_zoo.cli", "explain", *args], env)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_publish_to_a_new_branch_of_a_private_repo(hub, qpm_dir, tmp_path):
    folder = Path(shutil.copytree(qpm_dir, tmp_path / "model"))
    env = hub_env(hub.url, tmp_path / "home", token=TOKEN)
    args = [
        "training",
        "publish",
        str(folder),
        "org/private-qpm",
        "--private",
        "--revision",
        "dev",
        "--commit-message",
        "First upload of the tiny QPM",
    ]
    result = run_module(args, env)
    assert result.returncode == 0, result.stderr
    repo = hub.state.repos["org/private-qpm"]
    assert repo.private
    assert set(files_at(hub, "org/private-qpm", "main")) == {".gitattributes"}
    assert set(files_at(hub, "org/private-qpm", "dev")) == {
        ".gitattributes",
        "config.json",
        "model.safetensors",
        "README.md",
    }
    assert repo.commits[repo.branches["dev"]].message == "First upload of the tiny QPM"
    assert f"{hub.url}/org/private-qpm/commit/{repo.branches['dev']}" in result.stdout

    code = f"""
        import json
        from qpm_zoo import CheckpointError, GlobalExplainer
        from qpm_zoo.hub import resolve_file

        # HF_TOKEN is set: the owner sees the private repository
        explainer = GlobalExplainer.from_pretrained("org/private-qpm", revision="dev")
        weights = resolve_file("org/private-qpm", "model.safetensors", revision="dev")
        try:  # someone without the token, with a cache of their own
            resolve_file("org/private-qpm", "config.json", revision="dev", token=False,
                         cache_dir={str(tmp_path / "other")!r})
            anonymous = "downloaded"
        except CheckpointError as e:
            anonymous = str(e)
        print(json.dumps({{"labels": list(explainer.label_names), "weights": str(weights),
                          "anonymous": anonymous}}))
    """
    out = json_result(run_python(code, env))
    assert out["labels"] == list(json.loads((folder / "config.json").read_text())["label_names"])
    assert sha256(Path(out["weights"])) == sha256(folder / "model.safetensors")
    assert "repository not found (or private" in out["anonymous"]


# -- refusals ------------------------------------------------------------------------------------
def test_publish_without_a_token_stops_before_contacting_the_hub(hub, qpm_dir, tmp_path):
    folder = Path(shutil.copytree(qpm_dir, tmp_path / "model"))
    (folder / "README.md").write_text("old card\n")
    before = len(hub.state.requests)
    result = run_module(
        ["training", "publish", str(folder), "org/no-token"], hub_env(hub.url, tmp_path / "home")
    )
    assert result.returncode == 2
    assert "no Hugging Face token: pass --token, set HF_TOKEN" in result.stderr
    assert len(hub.state.requests) == before, "nothing was sent"
    assert (folder / "README.md").read_text() == "old card\n", "the folder was not changed"


def test_the_hub_rejects_a_publish_with_an_unknown_token(hub, qpm_dir, tmp_path):
    env = hub_env(hub.url, tmp_path / "home", token="hf_not_a_valid_token")
    result = run_module(["training", "publish", str(qpm_dir), "org/rejected"], env)
    assert result.returncode == 2
    assert "the Hub rejected the token (401 Unauthorized)" in result.stderr
    assert "Traceback" not in result.stderr
    assert "org/rejected" not in hub.state.repos


def test_push_to_hub_needs_a_token_and_uploads_the_qpm_model_card(hub, qpm_dir, tmp_path):
    code = f"""
        import json
        from huggingface_hub.errors import HfHubHTTPError
        from qpm_zoo.model import QPM

        model = QPM.from_pretrained({str(qpm_dir)!r})
        try:
            model.push_to_hub("org/mixin-qpm", token=False)
            anonymous = None
        except HfHubHTTPError as e:
            anonymous = e.response.status_code
        url = model.push_to_hub("org/mixin-qpm", model_card_kwargs={{"repo_id": "org/mixin-qpm"}})
        print(json.dumps({{"anonymous": anonymous, "url": url}}))
    """
    out = json_result(run_python(code, hub_env(hub.url, tmp_path / "home", token=TOKEN)))
    assert out["anonymous"] == 401, "the server refused the push without a token"
    repo = hub.state.repos["org/mixin-qpm"]
    assert len(repo.commits) == 2, "one initial commit and one push: the refused push left nothing"
    assert out["url"] == f"{hub.url}/org/mixin-qpm/commit/{repo.branches['main']}"
    files = files_at(hub, "org/mixin-qpm", "main")
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md"}
    card = hub.state.content(files["README.md"]).decode()
    assert ModelCard(card).data.library_name == "qpm-zoo"
    assert 'QPM.from_pretrained("org/mixin-qpm")' in card
    assert json.loads(hub.state.content(files["config.json"])) == json.loads(
        (qpm_dir / "config.json").read_text()
    )


def _remove(name: str):
    return lambda folder: (folder / name).unlink()


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


def _truncate_weights(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])


def _remove_both(folder: Path) -> None:
    _remove("config.json")(folder)
    _remove("model.safetensors")(folder)


@pytest.mark.parametrize(
    "source, damage, messages",
    [
        ("qpm_dir", _remove("config.json"), ["config.json is missing"]),
        ("qpm_dir", _remove("model.safetensors"), ["model.safetensors is missing"]),
        (
            "qpm_dir",
            _remove_both,
            ["config.json is missing", "model.safetensors is missing"],
        ),
        ("qpm_dir", _write("config.json", "{not json"), ["config.json: not valid JSON"]),
        (
            "qpm_dir",
            _write("model.onnx", "an export nobody recorded"),
            ["model.onnx is not recorded in config.json (no 'onnx' entry)"],
        ),
        (
            "checkpoint",
            _remove("model.onnx"),
            ["model.onnx is missing, but config.json records an ONNX export"],
        ),
        (
            "checkpoint",
            _write("model.onnx", "not the recorded export"),
            ["model.onnx differs from the export config.json records (SHA-256 mismatch)"],
        ),
        (
            "checkpoint",
            _write("old.onnx", "a stale export"),
            ["old.onnx is not the export config.json records ('model.onnx'); remove it"],
        ),
        ("qpm_dir", _truncate_weights, ["model.safetensors"]),
    ],
    ids=[
        "no-config",
        "no-weights",
        "neither",
        "bad-config",
        "unrecorded-onnx",
        "missing-onnx",
        "changed-onnx",
        "stale-onnx",
        "truncated-weights",
    ],
)
def test_incomplete_checkpoint_is_refused_with_what_is_wrong(
    source, damage, messages, request, tmp_path, capsys
):
    folder = Path(shutil.copytree(request.getfixturevalue(source), tmp_path / "model"))
    damage(folder)
    readme = (folder / "README.md").read_bytes()
    code = training_main(["publish", str(folder), "org/never", "--token", TOKEN])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("python -m training publish: error: ")
    assert "not a complete qpm-zoo checkpoint, nothing was uploaded" in err
    for message in messages:
        assert message in err
    assert (folder / "README.md").read_bytes() == readme, "the folder was not changed"


def test_dry_run_lists_the_files_and_changes_nothing(checkpoint, tmp_path, capsys):
    folder = Path(shutil.copytree(checkpoint, tmp_path / "model"))
    (folder / "README.md").write_text("old card\n")
    (folder / "notes.txt").write_text("not part of a checkpoint\n")
    assert training_main(["publish", str(folder), "org/dry", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["repo_id"] == "org/dry" and out["revision"] == "main"
    assert [(f["name"], f["regenerated"]) for f in out["files"]] == [
        ("config.json", False),
        ("model.safetensors", False),
        ("model.onnx", False),
        ("README.md", True),
    ]
    assert out["files"][1]["size"] == (folder / "model.safetensors").stat().st_size
    assert (folder / "README.md").read_text() == "old card\n"

    assert training_main(["publish", str(folder), "org/dry", "--dry-run"]) == 0
    table = capsys.readouterr().out
    assert "model.onnx" in table and "dry run: would commit these 4 files to org/dry" in table


def test_invalid_repo_id_is_refused(qpm_dir, capsys):
    assert training_main(["publish", str(qpm_dir), "org/bad name", "--dry-run"]) == 2
    assert "'org/bad name' is not a valid Hub repository id" in capsys.readouterr().err
