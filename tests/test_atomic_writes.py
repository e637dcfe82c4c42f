"""Atomic writes (issue #16, group 3): a writer killed at random moments leaves the old checkpoint
or the new one, never a mix, and the next write clears what the killed one left."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from pathlib import Path

import pytest
from conftest import make_model

from qpm_zoo import QPMConfig
from qpm_zoo import atomic as atomic_module
from qpm_zoo.atomic import atomic_folder, recover, write_text_atomic
from qpm_zoo.checkpoint import write_checkpoint

#: large enough that a write takes a while, so kills land inside writes
PAYLOAD_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def config() -> QPMConfig:
    return make_model("qpm", seed=0).config


def _version_of(config: QPMConfig, version: int) -> QPMConfig:
    return config.replace(metrics={"version": version})


def _write(folder: Path, config: QPMConfig, version: int) -> None:
    """One checkpoint whose every file says which version it is."""
    write_checkpoint(
        folder,
        _version_of(config, version),
        files={
            "README.md": f"version {version}\n",
            "metrics.json": json.dumps({"version": version}),
            "weights.bin": bytes([version % 256]) * PAYLOAD_BYTES,
            f"export-{version % 2}.onnx": str(version),
        },
    )


def _writer(folder: str, config_json: str) -> None:
    """Runs in the child: write versions 1, 2, 3, ... until killed."""
    config = QPMConfig.from_dict(json.loads(config_json))
    version = 1
    while True:
        _write(Path(folder), config, version)
        version += 1


def _state(folder: Path) -> int:
    """The one version every file of the checkpoint states (fails on a mix)."""
    names = sorted(p.name for p in folder.iterdir())
    version = QPMConfig.load(folder / "config.json").metrics["version"]
    assert names == sorted(
        ["config.json", "README.md", "metrics.json", "weights.bin", f"export-{version % 2}.onnx"]
    ), names
    assert (folder / "README.md").read_text() == f"version {version}\n"
    assert json.loads((folder / "metrics.json").read_text()) == {"version": version}
    weights = (folder / "weights.bin").read_bytes()
    assert weights == bytes([version % 256]) * PAYLOAD_BYTES
    return version


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != name)


@pytest.mark.parametrize("exchange", [True, False], ids=["rename-exchange", "two-renames"])
def test_a_writer_killed_at_random_moments_never_leaves_a_mix(
    tmp_path, config, exchange, monkeypatch
):
    if not exchange:  # the fallback where the system cannot exchange two names
        monkeypatch.setattr(atomic_module, "_exchange", lambda a, b: False)
    folder = tmp_path / "model"
    _write(folder, config, 0)
    context = multiprocessing.get_context("fork")
    rng = random.Random(16)
    seen = {0}
    for _ in range(12):
        child = context.Process(target=_writer, args=(str(folder), config.to_json()))
        child.start()
        time.sleep(rng.uniform(0.0, 0.15))
        child.kill()
        child.join()
        recover(folder)  # what the next writer does first
        seen.add(_state(folder))
        assert _leftovers(tmp_path, "model") == []
    assert len(seen) > 2  # kills landed after completed writes too, not only in the first


def test_the_next_write_clears_a_killed_writers_temporaries(tmp_path, config):
    folder = tmp_path / "model"
    _write(folder, config, 0)
    # what a writer with a dead process id left: a half-filled folder and a half-written file
    dead = _dead_pid()
    (tmp_path / f".model.{dead}-abcd1234.tmp").mkdir()
    (tmp_path / f".model.{dead}-abcd1234.tmp" / "config.json").write_text("{")
    (tmp_path / f".notes.txt.{dead}-efgh5678.tmp").write_text("half")
    # and a live writer's temporary, which must be left alone
    live = tmp_path / f".model.{os.getppid()}-live0000.tmp"
    live.mkdir()
    _write(folder, config, 1)
    write_text_atomic(tmp_path / "notes.txt", "done")
    assert _state(folder) == 1
    assert _leftovers(tmp_path, "model") == sorted([live.name, "notes.txt"])


def test_a_kill_between_the_two_renames_is_undone(tmp_path, config):
    folder = tmp_path / "model"
    _write(folder, config, 0)
    moved = tmp_path / f".model.{_dead_pid()}-abcd1234.old"
    os.replace(folder, moved)  # the fallback's state after its first rename
    recover(folder)
    assert _state(folder) == 0 and _leftovers(tmp_path, "model") == []


def test_a_failed_write_leaves_the_old_folder_and_nothing_else(tmp_path, config):
    folder = tmp_path / "model"
    _write(folder, config, 0)
    with pytest.raises(RuntimeError, match="disk full"), atomic_folder(folder) as new:
        (new / "config.json").write_text("{}")
        raise RuntimeError("disk full")
    assert _state(folder) == 0 and _leftovers(tmp_path, "model") == []


def test_save_pretrained_over_another_model_keeps_none_of_its_files(tmp_path, config):
    folder = tmp_path / "model"
    _write(folder, config, 0)
    make_model("qsenn", seed=3).save_pretrained(folder)
    names = {p.name for p in folder.iterdir()}
    assert names == {"config.json", "model.safetensors", "README.md", "weights.bin"}
    assert "version 0" not in (folder / "README.md").read_text()
    assert QPMConfig.load(folder / "config.json").model_type == "qsenn"


def _dead_pid() -> int:
    """A process id no process has (a child that has exited and been reaped)."""
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    return child.pid
