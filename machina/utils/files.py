"""Writing a file atomically: readers see the previous file or the new one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write the file ``path`` (exactly that name) with ``write``, atomically.

    ``write(f)`` writes the contents to ``f``, a binary file open on a temporary file
    ``.<name>.<random>.tmp`` in the same directory (so that the rename below stays on one
    file system). The temporary file is flushed to disk, renamed over ``path`` with
    ``os.replace`` (atomic on POSIX and Windows), and the directory is flushed so that the
    rename itself survives a power loss. If ``write`` or a later step raises, the temporary
    file is removed and ``path`` is untouched; a process killed while writing leaves
    ``path`` intact and the temporary file behind.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its directory must exist.
    write : callable taking a binary file
        Writes the whole contents; its return value is ignored.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    # A rename is durable once the directory entry is on disk; Windows has no directory
    # handles to flush (its renames are journaled by NTFS).
    if not hasattr(os, "O_DIRECTORY"):
        return
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
