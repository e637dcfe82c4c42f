"""Files and folders that readers see complete or not at all (torch-free).

Everything is written beside its destination under a hidden temporary name that carries the
writer's process id, and renamed into place when complete, so an error, a crash or a kill at any
moment leaves the old state or the new one, never a mix:

- a file replaces the old one with one `rename` (atomic on POSIX and Windows);
- a folder (a checkpoint) replaces the old one with one atomic exchange of the two names
  (Linux `renameat2(RENAME_EXCHANGE)`), after which the old content, now under the temporary
  name, is deleted. Where the exchange is unavailable the old folder is moved aside and the new
  one renamed in; a kill between the two renames is undone by the next write (`recover`).

A writer that is killed leaves its temporary entry behind; the next write to the same
destination deletes the temporaries of writers that are no longer running.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder", "atomic_path", "recover", "write_bytes_atomic", "write_text_atomic"]

_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.(?P<kind>tmp|old)")


def _usual_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private entries (0600/0700); give the permissions open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(path: Path) -> None:
    """Undo what killed writers of `path` left: put back an old folder that was moved aside
    while `path` is missing, and delete the temporaries of writers no longer running."""
    path = Path(path)
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for entry in siblings:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match["name"] != path.name or _running(int(match["pid"])):
            continue
        if match["kind"] == "old" and not os.path.lexists(path):
            os.replace(entry, path)  # killed between the two renames of the fallback swap
        else:
            _remove(entry)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block succeeds
    and is removed when it fails, so `path` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """A new, empty temporary folder beside `folder` to fill; when the block succeeds it takes
    `folder`'s place (an existing `folder` is removed only then), and when it fails it is
    deleted and `folder` is left as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover(folder)
    new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=_prefix(folder), suffix=".tmp"))
    try:
        yield new
        _usual_mode(new, directory=True)
        _swap_in(new, folder)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def _swap_in(new: Path, folder: Path) -> None:
    """Put `new` in `folder`'s place. An existing `folder` is exchanged with `new` in one step
    where the system can (then deleted under `new`'s name); otherwise it is moved aside first
    (POSIX cannot rename over a non-empty folder) and put back if the second rename fails."""
    if not os.path.lexists(folder):
        os.replace(new, folder)
        return
    if _exchange(new, folder):
        shutil.rmtree(new, ignore_errors=True)  # the old content, now under the temporary name
        return
    old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=_prefix(folder), suffix=".old"))
    os.rmdir(old)
    os.replace(folder, old)
    try:
        os.replace(new, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` atomically (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # no such libc function (glibc < 2.28, musl)
        return False
    renameat2.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    )
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the file system cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))
