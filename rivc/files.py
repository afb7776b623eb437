"""Folders written as one unit: a reader sees the old folder or the new one, never a mix (numpy-free, torch-free).

A writer fills a fresh hidden folder beside the target and swaps it into place when it is done (Linux's
``renameat2(RENAME_EXCHANGE)``: one atomic step; elsewhere two renames, between which the folder is briefly
absent); a lock (``flock`` on a hidden lock file, released by the kernel when its holder dies) refuses a second
writer; an existing folder with files in it is replaced only when the caller says so. A kill or a full disk
midway leaves the old folder as it was, and a hidden ``.NAME.*.tmp`` folder to delete.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

AT_FDCWD, RENAME_EXCHANGE = -100, 2
# a write that failed for want of room or rights: reported as a failed write of the folder, which is unchanged
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


class FolderError(ValueError):
    """A folder that cannot be written as asked (it exists, another process writes it, it is not a folder)."""


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def chmod_as_umask(path: str | os.PathLike, mode: int) -> None:
    """Give ``path`` the permissions ``open()`` or ``mkdir()`` would (``mode`` less the umask): temporary files and
    folders are made private, and the ones renamed into place should not stay so."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _check(path: Path, force: bool) -> None:
    if path.is_symlink():
        raise FolderError(f"{path} is a symbolic link: name a folder (writes never follow a link out of it)")
    if path.exists() and not path.is_dir():
        raise FolderError(f"{path} exists and is not a folder: name a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FolderError(f"{path} exists and holds files: pass --force (force=True) to replace it, or choose another "
                          "folder")


@contextlib.contextmanager
def folder_unit(path: str | os.PathLike, force: bool = False, keep_on_interrupt: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder to write ``path``'s files into; when the block ends without an error it
    replaces ``path`` (an existing folder with files only when ``force``), else it is removed (kept, and said
    where, on Ctrl-C when ``keep_on_interrupt``: a long run's partial results)."""
    path = Path(path)
    _check(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.parent / f".{path.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderError(f"{path} is being written by another process: wait for it to finish or choose another "
                              "folder") from None
        _check(path, force)  # again, now that no other writer can change it
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        chmod_as_umask(staging, 0o777)
        try:
            yield staging
            if not path.exists():
                os.replace(staging, path)
            elif _exchange(staging, path):
                shutil.rmtree(staging, ignore_errors=True)  # now the old folder
            else:
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
                os.replace(path, old / path.name)
                os.replace(staging, path)
                shutil.rmtree(old, ignore_errors=True)
        except KeyboardInterrupt:
            if not keep_on_interrupt:
                shutil.rmtree(staging, ignore_errors=True)
            else:
                sys.stderr.write(f"interrupted: {path} is unchanged; what was written is in {staging}\n")
            raise
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno not in WRITE_ERRORS:
                raise
            name = os.path.relpath(exc.filename, staging) if isinstance(exc.filename, str) else None
            inside = name is not None and not name.startswith("..")
            raise OSError(exc.errno, f"{exc.strerror}: writing {name + ' into ' if inside else ''}{path} failed, "
                                     f"{path} is unchanged") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        os.close(lock)  # releases the lock; the hidden lock file stays for the next writer
