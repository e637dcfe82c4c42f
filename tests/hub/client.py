"""Run the real Hub client in a subprocess pointed at a test server.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET when it is imported,
and the test process itself runs offline (tests/conftest.py), so client code runs in a fresh
interpreter with an environment of its own: the server's endpoint, online, no Xet, an empty
HF_HOME (no stored login, no cache from elsewhere) and a token only when the test gives one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from . import REPO_ROOT


def hub_env(endpoint: str, hf_home: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(hf_home),
        OMP_NUM_THREADS="1",  # a 2-core machine shared with the rest of the suite
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `code` (dedented) with the repository root as working directory."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_module(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess:
    """`python -m ARGS...`, e.g. the publish command as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_result(result: subprocess.CompletedProcess) -> Any:
    """The JSON document the client printed (its whole stdout); fails with its stderr."""
    assert result.returncode == 0, f"client failed ({result.returncode}):\n{result.stderr[-4000:]}"
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"client printed no JSON:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        ) from None
