"""Column storage of a Traj: buffers written in place, grown, compacted, and the operating
system's memory under them (memory maps, page release).

This is the one module of machina that manages memory by hand: ``ctypes``/``madvise`` and
``torch._C._storage_Use_Count`` (with an owner count checked by
``tests/test_traj_storage.py`` against the installed torch).
"""

from __future__ import annotations

import ctypes
import math
import mmap
import sys

import torch

# Capacity of an unbounded Traj's buffers, relative to its rows when they are reallocated.
_GROWTH = 1.5
# Smallest chunk of rows moved per copy when compacting a FIFO (see _move_to_front).
_MIN_MOVE_ROWS = 4096
# CPU buffers from this size on get their own memory map (see _empty).
_MMAP_BYTES = 1 << 20
# Rows copied between page releases when an unbounded Traj's buffers grow (see _grow_copy).
_GROW_CHUNK_BYTES = 16 << 20
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_MADV_DONTNEED = 4  # <sys/mman.h> on Linux
# Python's mmap maps MAP_SHARED by default: shared pages survive MADV_DONTNEED (only this
# process's view of them goes) and count as shmem, not as the process's own memory.
_MAP_FLAGS = (
    {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_ANONYMOUS") else {}
)
# Tensors that hold an owned buffer's storage: the flat tensor over the mapping, the buffer
# (a view of it) and the Traj's data_map view of the stored rows.
_OWNED_HOLDERS = 3


def _empty(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised buffer; large CPU ones in their own anonymous memory map.

    glibc serves a freed size from its heap afterwards (its mmap threshold rises), and buffers
    that grow by reallocation then fragment the heap (resident memory far above the columns'
    bytes). A private mapping is returned to the OS when the tensor dies, and its untouched
    pages (the spare capacity) are never resident.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < _MMAP_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.frombuffer(mmap.mmap(-1, nbytes, **_MAP_FLAGS), dtype=dtype).view(shape)


def _is_mapped(buf: torch.Tensor) -> bool:
    """Whether ``buf`` is a whole private mapping made by :func:`_empty`."""
    return buf.device.type == "cpu" and buf.untyped_storage().nbytes() >= _MMAP_BYTES


def _unshared(buf: torch.Tensor) -> bool:
    """Whether no tensor but the owning Traj's own views the storage of ``buf``.

    Other views (``Traj.epis()`` episodes, a sliced column someone kept) must keep their
    rows, so their buffer's pages are not released. Unknown (no use count): assume shared.
    """
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None or not _MAP_FLAGS:
        return False
    storage = buf.untyped_storage()  # its handle counts as one more holder
    return use_count(storage._cdata) <= _OWNED_HOLDERS + 1


def _release_pages(buf: torch.Tensor, nbytes: int) -> None:
    """Return the whole pages among the first ``nbytes`` of ``buf``'s mapping to the OS.

    Their contents read as zeros afterwards; only called on buffers about to be dropped.
    """
    size = nbytes // mmap.PAGESIZE * mmap.PAGESIZE
    if _LIBC is not None and size > 0:
        start = ctypes.c_void_p(buf.untyped_storage().data_ptr())  # mappings are page-aligned
        _LIBC.madvise(start, ctypes.c_size_t(size), _MADV_DONTNEED)


def _grow_copy(dst: torch.Tensor, src: torch.Tensor, release: bool) -> None:
    """Copy ``src`` into the first rows of ``dst``; with ``release``, free ``src`` as it goes.

    Growing copies every stored row into a larger buffer; copied whole, the old and the new
    buffer are resident together. Releasing the old pages chunk by chunk keeps the peak near
    the new size.
    """
    if not release:
        dst[: len(src)].copy_(src)
        return
    row_bytes = max(1, src[0].numel() * src.element_size()) if len(src) else 1
    step = max(1, _GROW_CHUNK_BYTES // row_bytes)
    offset = src.storage_offset() * src.element_size()  # rows of src start here in its map
    for i in range(0, len(src), step):
        end = min(len(src), i + step)
        dst[i:end].copy_(src[i:end])
        _release_pages(src, offset + end * row_bytes)


def _move_to_front(buf: torch.Tensor, src: int, n: int) -> None:
    """Move rows ``[src, src + n)`` of ``buf`` to ``[0, n)`` in place, front to back.

    torch refuses overlapping copies, so the rows move in chunks of ``step`` rows: chunk
    ``[src + i, src + i + c)`` overlaps its destination ``[i, i + c)`` only when
    ``src < step``, and writing it only overwrites rows already read. Chunks of ``src`` rows
    need no temporary (large temporaries leave heap memory resident);
    a small ``src`` would mean very many copies, so it gets small cloned chunks instead.
    """
    step = max(src, _MIN_MOVE_ROWS)
    for i in range(0, n, step):
        chunk = buf[src + i : src + min(n, i + step)]
        if src < step:
            chunk = chunk.clone()
        buf[i : i + len(chunk)].copy_(chunk)


class ColumnStorage:
    """The storage job of ``Traj``: its columns ``data_map`` as views of buffers it owns.

    Expects ``data_map``, ``_bufs``, ``_views``, ``_start``, ``_epis_index``, ``max_steps``
    and ``device`` (set by ``Traj.__init__``).
    """

    def _owns(self) -> bool:
        """Whether data_map still is the views of this Traj's own buffers (see __init__)."""
        return (
            bool(self._bufs)
            and self.data_map.keys() == self._views.keys()
            and all(self.data_map[k] is v for k, v in self._views.items())
        )

    def _disown(self) -> None:
        self._bufs, self._views, self._start = {}, {}, 0

    def _write(self, columns: dict[str, torch.Tensor], drop: int) -> None:
        """Append ``columns`` after the stored rows, dropping the first ``drop`` rows of both."""
        # the batching job's numpy views hold the buffers' storage: a regrown buffer could not
        # release its pages (_unshared) or be freed before the next batch
        self.__dict__.pop("_np_views", None)
        old = {k: v for k, v in self.data_map.items()} if self.num_epi > 0 else {}
        old_drop = min(drop, self.num_step)
        kept_old = self.num_step - old_drop
        new_from = drop - old_drop  # a batch longer than max_steps loses episodes too
        size = kept_old + len(next(iter(columns.values()))) - new_from
        for k, v in old.items():
            if v.shape[1:] != columns[k].shape[1:]:
                raise ValueError(
                    f"{k}: expected steps of shape {tuple(v.shape[1:])} as stored, "
                    f"got {tuple(columns[k].shape[1:])}"
                )
        # a buffer holds a batch it need not widen (e.g. float32 rows after one float64 batch)
        owned = self._owns() and all(
            self._bufs[k].dtype == c.dtype
            or (
                k in old
                and torch.promote_types(self._bufs[k].dtype, c.dtype) == self._bufs[k].dtype
            )
            for k, c in columns.items()
        )
        cap = len(next(iter(self._bufs.values()))) if owned else 0
        start = self._start + old_drop  # eviction of stored rows only moves the start
        if owned and start + size > cap and size <= cap:
            # No room at the tail: move the kept rows to the front, in place.
            for buf in self._bufs.values():
                _move_to_front(buf, start, kept_old)
            start = 0
        elif not owned or size > cap:
            # New buffers, grown geometrically so that appends copy each row O(1) times.
            # Bounded, at most room for max_steps plus this batch: the kept rows never exceed
            # max_steps, so compaction always makes room later. max_steps is only a cap, never
            # reserved up front (machina 0.x's examples pass max_steps=10**12).
            cap = max(size, int(size * _GROWTH))
            if self.max_steps is not None:
                cap = max(size, min(cap, self.max_steps + size - kept_old))
            bufs = {}
            for k, c in columns.items():
                dtype = torch.promote_types(old[k].dtype, c.dtype) if k in old else c.dtype
                bufs[k] = _empty((cap, *c.shape[1:]), dtype, self.device)
                if kept_old:
                    # Only buffers this Traj owns alone may lose their pages while copying.
                    release = owned and _is_mapped(self._bufs[k]) and _unshared(self._bufs[k])
                    _grow_copy(bufs[k], old[k][old_drop:], release)
            self._bufs, start = bufs, 0
        del old  # the old buffers are freed once the views below replace data_map's
        for k, c in columns.items():
            self._bufs[k][start + kept_old : start + size].copy_(c[new_from:])
        self._start = start
        self.data_map = {k: b[start : start + size] for k, b in self._bufs.items()}
        self._views = dict(self.data_map)

    def writable_column(self, key: str) -> torch.Tensor:
        """Column ``key``, safe to modify in place (e.g. priorities updated by index).

        Columns adopted without a copy, loaded, or shared with a copy of this Traj are first
        copied into this Traj's own buffers (once), so that an in-place write never reaches
        another object's arrays.
        """
        if key not in self.data_map:
            raise KeyError(f"{key}: the Traj has no '{key}' column")
        if not self._owns():
            self._write({k: v[:0] for k, v in self.data_map.items()}, 0)
        return self.data_map[key]
