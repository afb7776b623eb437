"""Folders written as one unit: a reader sees the old folder or the new one, never a mix (numpy-free, torch-free).

A writer fills a fresh hidden folder beside the target and renames it into place when it is done; a lock file
refuses a second writer; an existing folder with files in it is replaced only when the caller says so. A kill or
a full disk midway leaves the old folder as it was (and a hidden ``.NAME.*.tmp`` folder to delete).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class FolderError(ValueError):
    """A folder that cannot be written as asked (it exists, another process writes it, it is not a folder)."""


def _lock(path: Path) -> int:
    """An exclusive lock file beside ``path`` holding the writer's pid; a lock whose process is gone is taken over."""
    lock = path.parent / f".{path.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)  # raises where no such process runs
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # a stale lock (the writer was killed)
                continue
            except PermissionError:
                pass  # the process exists under another user
            raise FolderError(f"{path} is being written by another process (pid {pid}, lock {lock}); wait for it to "
                              "finish or choose another folder") from None
        os.write(fd, str(os.getpid()).encode())
        return fd
    raise FolderError(f"cannot lock {lock}: remove it if no process writes {path}")


@contextlib.contextmanager
def folder_unit(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder to write ``path``'s files into; when the block ends without an error it
    replaces ``path`` (an existing folder with files only when ``force``), else it is removed."""
    path = Path(path)
    if path.is_symlink():
        raise FolderError(f"{path} is a symbolic link: name a folder (writes never follow a link out of it)")
    if path.exists() and not path.is_dir():
        raise FolderError(f"{path} exists and is not a folder: name a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FolderError(f"{path} exists and holds files: pass --force (force=True) to replace it, or choose another "
                          "folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path)
    try:
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # as a folder made by mkdir would be (mkdtemp makes it private)
        try:
            yield staging
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
                os.replace(path, old / path.name)
            os.replace(staging, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        os.close(fd)
        (path.parent / f".{path.name}.lock").unlink(missing_ok=True)
