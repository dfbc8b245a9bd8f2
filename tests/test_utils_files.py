"""machina.utils.files.write_atomic: the file is replaced whole, and a write that fails
leaves the previous file and no temporary file."""

import os

import pytest

from machina.utils import write_atomic


def test_write_atomic_creates_and_replaces_the_file_whole(tmp_path):
    path = tmp_path / "latest"
    write_atomic(path, lambda f: f.write(b"first, a longer text"))
    assert path.read_bytes() == b"first, a longer text"
    write_atomic(str(path), lambda f: f.write(b"second"))  # str or PathLike
    assert path.read_bytes() == b"second"  # nothing of the longer first contents is left
    assert os.listdir(tmp_path) == ["latest"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "latest"
    path.write_bytes(b"old")

    def half_write(f):
        f.write(b"half of the new contents")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        write_atomic(path, half_write)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["latest"]
    # A path whose directory does not exist fails before anything is written.
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "latest", lambda f: f.write(b"x"))
    assert os.listdir(tmp_path) == ["latest"]
