"""Start olah (a self-hosted Hub mirror, `pip install olah==0.5.4`) offline on 127.0.0.1.

olah lives in its own virtual environment (`.venv/olah`, made by the Makefile's install rule),
so its server dependencies never mix with the product's. Its options are those of olah 0.5.4's
configs.py: every netloc points at 127.0.0.1, the upstream Hub at a closed port, and
`offline = true` makes it serve only the git repositories under `mirrors-path`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from typing_extensions import Self

from . import REPO_ROOT

OLAH_VERSION = "0.5.4"
INSTALL_HINT = (
    f"python3 -m venv .venv/olah && .venv/olah/bin/pip install olah=={OLAH_VERSION} "
    "(or: rm .venv/.installed && make venv)"
)


def find_olah() -> Path | None:
    """olah-cli from QPM_OLAH_CLI, the repository's .venv/olah, or the PATH."""
    candidates = [
        os.environ.get("QPM_OLAH_CLI"),
        REPO_ROOT / ".venv" / "olah" / "bin" / "olah-cli",
        shutil.which("olah-cli"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def unused_port() -> int:
    """A port nothing listens on right now (the OS picks it; we close it again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OlahServer:
    """olah serving `mirrors` offline; ready when `probe_repo`'s main revision answers."""

    def __init__(
        self, olah_cli: Path, mirrors: Path, workdir: Path, probe_repo: str, timeout: float = 90
    ):
        self.olah_cli, self.mirrors, self.workdir = olah_cli, Path(mirrors), Path(workdir)
        self.probe_repo, self.timeout = probe_repo, timeout
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = self.workdir / "olah.out"
        self._process: subprocess.Popen | None = None

    def _config(self) -> str:
        closed = f"127.0.0.1:{unused_port()}"  # the "real" Hub: nothing answers there
        here = f"127.0.0.1:{self.port}"
        return "\n".join(
            [
                "[basic]",
                'host = "127.0.0.1"',
                f"port = {self.port}",
                f'repos-path = "{self.workdir / "repos"}"',
                f'mirrors-path = ["{self.mirrors}"]',
                'hf-scheme = "http"',
                f'hf-netloc = "{closed}"',
                f'hf-lfs-netloc = "{closed}"',
                'mirror-scheme = "http"',
                f'mirror-netloc = "{here}"',
                f'mirror-lfs-netloc = "{here}"',
                "metadata-cache-ttl = 0",
                "",
                "[accessibility]",
                "offline = true",
                "",
            ]
        )

    def __enter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "olah.toml"
        config.write_text(self._config())
        with open(self.log_file, "wb") as log:
            self._process = subprocess.Popen(
                [str(self.olah_cli), "-c", str(config), "--log-path", str(self.workdir / "logs")],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_ready(self) -> None:
        probe = f"{self.url}/api/models/{self.probe_repo}/revision/main"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"olah exited with status {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(probe, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"olah did not answer {probe} within {self.timeout} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
