"""How the Hub stores files: git blob ids and Git LFS pointers (shared by both test servers)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Files stored with Git LFS whatever their size, like the Hub's default .gitattributes.
LFS_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".npz")

GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)


def git_blob_oid(data: bytes) -> str:
    """The id git gives a file's content (what the Hub reports as a regular file's oid/ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs_path(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass(frozen=True)
class LfsPointer:
    """The small text file git keeps in place of a large file's content."""

    sha256: str
    size: int

    @classmethod
    def of(cls, data: bytes) -> LfsPointer:
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    def text(self) -> str:
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.sha256}\nsize {self.size}\n"

    def blob(self) -> bytes:
        return self.text().encode("ascii")
