"""Writing a file atomically: readers see the previous file or the new one, never a part."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["remove_stale_temporaries", "temporary_prefix", "write_atomic"]


def temporary_prefix(name: str) -> str:
    """``.<name>.<host>.<pid>.``: the prefix of a temporary file or directory that stands
    for ``name`` while this process writes it (so that a later save can tell a leftover of
    a killed writer from a file being written)."""
    return f".{name}.{socket.gethostname()}.{os.getpid()}."


def remove_stale_temporaries(directory: str | os.PathLike, name: str) -> None:
    """Remove the temporaries of ``name`` in ``directory`` (:func:`temporary_prefix`) left by
    processes of this host that no longer run: a save killed half way leaves one, as big as
    the file. Another host's (a shared file system) and live writers' are left alone."""
    prefix = f".{name}.{socket.gethostname()}."
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(os.fspath(directory)):
            pid = entry.name[len(prefix) :].split(".", 1)[0]
            if not entry.name.startswith(prefix) or not pid.isdigit() or _alive(int(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows: os.kill(pid, 0) sends CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write the file ``path`` (exactly that name) with ``write``, atomically.

    ``write(f)`` writes the contents to ``f``, a binary file open on a temporary file
    ``.<name>.<host>.<pid>.<random>.tmp`` in the same directory (so that the rename below
    stays on one file system). The temporary file is flushed to disk, renamed over ``path`` with
    ``os.replace`` (atomic on POSIX and Windows), and the directory is flushed so that the
    rename itself survives a power loss. If ``write`` or a later step raises, the temporary
    file is removed and ``path`` is untouched; a process killed while writing leaves
    ``path`` intact and the temporary file behind, which the next save of ``path`` on this
    host removes.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace; its directory must exist.
    write : callable taking a binary file
        Writes the whole contents; its return value is ignored.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(name), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode(0o666))  # mkstemp's 0600: as open() would have made it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    remove_stale_temporaries(directory, name)


def default_mode(mode: int) -> int:
    """``mode`` less the process's umask: the permissions ``open`` / ``mkdir`` give a new
    file or folder (``tempfile`` makes its own private, 0600 / 0700)."""
    return mode & ~_umask()


def _umask() -> int:
    # Linux shows it in /proc; elsewhere the only way is to set it and set it back, which
    # for that instant gives a file another thread makes a umask of 0
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)  # the safe side for that instant
    os.umask(umask)
    return umask


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
