"""Downloading checkpoints from a real, independent Hub server: olah (offline mirror) on 127.0.0.1.

olah serves git repositories built here from checkpoint folders (large files as Git LFS
objects, tests/hub/git_mirror.py). The client runs in subprocesses pointed at it
(tests/hub/client.py): `QPM.from_pretrained("org/name")` and `QPMOnnx.from_pretrained` must
give exactly the local folder's predictions, and a pinned revision (tag or commit) must load
that revision.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import make_model
from hub.client import hub_env, json_result, run_module, run_python
from hub.data import exported_checkpoint, random_images
from hub.git_mirror import GitMirrorRepo
from hub.olah import INSTALL_HINT, OlahServer, find_olah

REPO = "org/qpm-tiny"
ONNX_REPO = "org/qpm-tiny-onnx"


@pytest.fixture(scope="module")
def olah_cli() -> Path:
    cli = find_olah()
    if cli is None:
        message = f"olah is not installed (needed to test Hub downloads): {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return cli


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Path]:
    """Two checkpoints with different weights and assignments: v1, then v2."""
    root = tmp_path_factory.mktemp("olah-checkpoints")
    folders = {}
    for name, seed in (("v1", 21), ("v2", 22)):
        folders[name] = root / name
        make_model("qpm", seed=seed).save_pretrained(folders[name])
    return folders


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("olah-mirrors")


@pytest.fixture(scope="module")
def commits(mirrors, versions) -> dict[str, str]:
    """REPO's history: v1 (tagged "v1"), then v2 on main."""
    repo = GitMirrorRepo(mirrors, REPO)
    out = {"v1": repo.commit_folder(versions["v1"], "first checkpoint")}
    repo.tag("v1")
    out["v2"] = repo.commit_folder(versions["v2"], "second checkpoint")
    return out


@pytest.fixture(scope="module")
def olah(olah_cli, mirrors, commits, tmp_path_factory):
    with OlahServer(olah_cli, mirrors, tmp_path_factory.mktemp("olah"), probe_repo=REPO) as server:
        yield server


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    return random_images(tmp_path_factory.mktemp("olah-images"), 9, [(64, 64), (100, 75)])


@pytest.fixture(scope="module")
def loaded(olah, commits, versions, images, tmp_path_factory) -> dict:
    """Predictions of REPO at several revisions and of the local folders, from one client process,
    and the SHA-256 of each downloaded file of main."""
    revisions = {"main": None, "tag v1": "v1", "sha v1": commits["v1"], "sha v2": commits["v2"]}
    folders = {name: str(folder) for name, folder in versions.items()}
    code = f"""
        import hashlib, json
        from huggingface_hub import hf_hub_download
        from qpm_zoo.model import QPM

        def predict(model):
            return [p.to_dict() for p in model.predict({images!r})]

        out = {{"hub": {{}}, "local": {{}}, "sha256": {{}}}}
        for name, revision in {revisions!r}.items():
            out["hub"][name] = predict(QPM.from_pretrained({REPO!r}, revision=revision))
        for name, folder in {folders!r}.items():
            out["local"][name] = predict(QPM.from_pretrained(folder))
        for name in ("config.json", "model.safetensors"):
            with open(hf_hub_download({REPO!r}, name), "rb") as fh:
                out["sha256"][name] = hashlib.sha256(fh.read()).hexdigest()
        print(json.dumps(out))
    """
    return json_result(run_python(code, hub_env(olah.url, tmp_path_factory.mktemp("hf-home"))))


def test_from_pretrained_through_olah_matches_the_local_folder(loaded, versions):
    assert loaded["hub"]["main"] == loaded["local"]["v2"]
    for name in ("config.json", "model.safetensors"):
        assert (
            loaded["sha256"][name]
            == hashlib.sha256((versions["v2"] / name).read_bytes()).hexdigest()
        )


def test_pinned_revision_loads_that_revision(loaded):
    assert loaded["local"]["v1"] != loaded["local"]["v2"], (
        "the two versions must differ to tell them apart"
    )
    assert loaded["hub"]["tag v1"] == loaded["local"]["v1"]
    assert loaded["hub"]["sha v1"] == loaded["local"]["v1"]
    assert loaded["hub"]["sha v2"] == loaded["local"]["v2"]


def test_cli_through_olah_and_clear_errors(olah, versions, tmp_path):
    env = hub_env(olah.url, tmp_path / "home")
    result = run_module(
        ["qpm_zoo.cli", "explain", REPO, "Blue Jay", "--revision", "v1", "--json"], env
    )
    assert result.returncode == 0, result.stderr
    local = run_module(["qpm_zoo.cli", "explain", str(versions["v1"]), "Blue Jay", "--json"], env)
    assert json.loads(result.stdout) == json.loads(local.stdout)

    cases = [
        (["org/absent", "Cardinal"], "Hub repository 'org/absent': repository not found"),
        # olah answers an unknown revision of a mirrored repo with RepoNotFound, unlike the Hub
        # (see test_hub_upload.py for RevisionNotFound); the message still names both.
        (
            [REPO, "Cardinal", "--revision", "no-such-tag"],
            f"Hub repository '{REPO}' at revision 'no-such-tag'",
        ),
    ]
    for args, message in cases:
        result = run_module(["qpm_zoo.cli", "explain", *args], env)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_force_download_of_a_missing_repo_is_a_clear_error(olah, tmp_path):
    """force_download wraps the Hub's HTTP error in a ValueError; the message must still say why."""
    code = """
        from qpm_zoo.errors import CheckpointError
        from qpm_zoo.hub import resolve_file
        try:
            resolve_file("org/absent", "config.json", force_download=True)
        except CheckpointError as e:
            print(e)
    """
    result = run_python(code, hub_env(olah.url, tmp_path / "home"))
    assert "Hub repository 'org/absent': repository not found" in result.stdout, result.stderr


@pytest.fixture(scope="module")
def onnx_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint with its ONNX export, made by the exporter users run."""
    return exported_checkpoint(tmp_path_factory)


def test_onnx_from_pretrained_through_olah_matches_the_local_folder(
    olah, mirrors, onnx_checkpoint, images, tmp_path
):
    GitMirrorRepo(mirrors, ONNX_REPO).commit_folder(onnx_checkpoint, "checkpoint with ONNX export")
    code = f"""
        import json
        from qpm_zoo.onnx_model import QPMOnnx

        out = {{}}
        for name, source in (("hub", {ONNX_REPO!r}), ("local", {str(onnx_checkpoint)!r})):
            model = QPMOnnx.from_pretrained(source, providers=["CPUExecutionProvider"])
            out[name] = [p.to_dict() for p in model.predict({images!r})]
        print(json.dumps(out))
    """
    out = json_result(run_python(code, hub_env(olah.url, tmp_path / "home")))
    assert len(out["hub"]) == len(images)
    assert out["hub"] == out["local"]
