"""`python -m training publish MODEL REPO --space SPACE`: the explorer as a Hugging Face Space,
uploaded to the test Hub (tests/hub/upload_server.py) beside the model, and started locally from
the files downloaded back, against the model on that Hub."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hub import REPO_ROOT
from hub.client import hub_env, json_result, run_module, run_python
from hub.data import exported_checkpoint
from hub.upload_server import HubTestServer
from huggingface_hub import SpaceCard

from qpm_zoo.version import __version__
from training.cli import main as training_main

TOKEN = "hf_test_write_token"
SPACE_FILES = ["app.py", "requirements.txt", "README.md"]


@pytest.fixture(scope="module")
def hub():
    with HubTestServer(tokens={TOKEN: "tester"}) as server:
        yield server


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return exported_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def published(hub, checkpoint, tmp_path_factory) -> dict:
    env = hub_env(hub.url, tmp_path_factory.mktemp("hf-home-space"), token=TOKEN)
    args = ["publish", str(checkpoint), "org/qpm-space-model", "--space", "org/qpm-explorer"]
    return json_result(run_module(["training", *args, "--json"], env))


def space_text(hub: HubTestServer, name: str) -> str:
    space = hub.state.spaces["org/qpm-explorer"]
    return hub.state.content(space.resolve("main").files[name]).decode("utf-8")


def test_publish_writes_and_uploads_the_space(hub, published):
    assert published["space"]["repo_id"] == "org/qpm-explorer"
    assert published["space"]["onnx"] is True, "the checkpoint has an export: a torch-free Space"
    assert published["space"]["files"] == SPACE_FILES
    space = hub.state.spaces["org/qpm-explorer"]
    assert space.sdk == "gradio"
    assert published["space"]["commit_oid"] == space.branches["main"]
    assert set(space.resolve("main").files) == {".gitattributes", *SPACE_FILES}

    card = SpaceCard(space_text(hub, "README.md"))
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.sdk_version == "6.31.0"
    assert card.data.models == ["org/qpm-space-model"]
    assert card.data.license == "apache-2.0"
    assert space_text(hub, "requirements.txt") == f"qpm-zoo[app,onnx]=={__version__}\n"
    app = space_text(hub, "app.py")
    ast.parse(app)
    assert "MODEL = 'org/qpm-space-model'" in app and "onnx=True" in app
    assert not [r for r in hub.state.requests if r.status >= 500]


def test_dry_run_lists_the_space_and_a_bad_space_id_is_refused(checkpoint, capsys):
    args = ["publish", str(checkpoint), "org/dry", "--dry-run"]
    assert training_main([*args, "--space", "org/dry-explorer"]) == 0
    assert "would commit the Space org/dry-explorer (app.py, requirements.txt, README.md)" in (
        capsys.readouterr().out
    )
    assert training_main([*args, "--space", "not a repo id"]) == 2
    assert "--space 'not a repo id' is not a valid Space repository id" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_downloaded_space_starts_and_serves_the_model(hub, published, tmp_path):
    pytest.importorskip("gradio")
    env = hub_env(hub.url, tmp_path / "home")
    code = """
        import json
        from huggingface_hub import snapshot_download
        print(json.dumps(snapshot_download("org/qpm-explorer", repo_type="space")))
    """
    folder = Path(json_result(run_python(code, env)))
    assert sorted(os.listdir(folder)) == sorted([".gitattributes", *SPACE_FILES])
    port = _free_port()
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        PYTHONPATH=str(REPO_ROOT),  # qpm_zoo from this checkout, as requirements.txt installs it
    )
    server = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        config = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                    config = json.loads(r.read())
                break
            except OSError:
                time.sleep(1)
        assert config is not None, f"the Space did not start:\n{server.communicate()[0][-3000:]}"
        text = json.dumps(config)
        assert "QPM explorer" in text or "qpm-zoo explorer" in text
        assert "Cardinal" in text and "qpm-upload" in text
    finally:
        server.terminate()
        server.wait(timeout=30)
