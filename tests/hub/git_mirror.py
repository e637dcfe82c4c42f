"""Model repositories as olah serves them offline: git work trees with Git LFS objects.

olah (mirror/repos.py) reads `{mirrors}/models/{org}/{name}` with GitPython: a file whose blob
is a Git LFS pointer is served from `.git/lfs/objects/aa/bb/<sha256>`, like the Hub serves LFS
files. git-lfs itself is not needed to build such a repository: we write the pointer files and
the objects where git-lfs would, and commit with plain git.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .git_objects import GITATTRIBUTES, LfsPointer, is_lfs_path

_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,  # the developer's git config must not change the repository
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "qpm-zoo tests",
    "GIT_AUTHOR_EMAIL": "tests@qpm-zoo.invalid",
    "GIT_COMMITTER_NAME": "qpm-zoo tests",
    "GIT_COMMITTER_EMAIL": "tests@qpm-zoo.invalid",
}


class GitMirrorRepo:
    """One model repository under an olah mirrors folder."""

    def __init__(self, mirrors_root: Path, repo_id: str):
        org, name = repo_id.split("/")
        self.repo_id = repo_id
        self.path = Path(mirrors_root) / "models" / org / name
        self.path.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")

    def _git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **_GIT_ENV},
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"git {' '.join(args)} failed in {self.path}: {result.stderr.strip()}"
            )
        return result.stdout.strip()

    def commit_folder(self, folder: Path, message: str) -> str:
        """Make the repository's main branch hold exactly `folder`'s files; the new commit id."""
        for entry in self.path.iterdir():
            if entry.name != ".git":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        (self.path / ".gitattributes").write_text(GITATTRIBUTES)
        for source in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            name = source.relative_to(folder).as_posix()
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes()
            if is_lfs_path(name):
                pointer = LfsPointer.of(data)
                obj = (
                    self.path
                    / ".git"
                    / "lfs"
                    / "objects"
                    / pointer.sha256[:2]
                    / pointer.sha256[2:4]
                    / pointer.sha256
                )
                obj.parent.mkdir(parents=True, exist_ok=True)
                obj.write_bytes(data)
                target.write_bytes(pointer.blob())
            else:
                target.write_bytes(data)
        self._git("add", "--all")
        self._git("commit", "-q", "-m", message)
        return self._git("rev-parse", "HEAD")

    def tag(self, name: str, revision: str = "HEAD") -> None:
        self._git("tag", name, revision)
