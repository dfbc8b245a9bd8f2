"""Columnar storage of whole episodes."""

from __future__ import annotations

import copy
import ctypes
import functools
import math
import mmap
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from machina.traj import _ddp, _files, _replay
from machina.traj._batching import check_batch_size, gather_sequences
from machina.traj._columns import FlatEpisodes, split_columns

Epi = dict
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
    that grow by reallocation then fragment the heap: measured 14 MB resident over 41 MB of
    columns. A private mapping is returned to the OS when the tensor dies, and its untouched
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
    buffer are resident together (measured: peak 1.41x the final bytes, registering 1M steps
    in 200 batches). Releasing the old pages chunk by chunk keeps the peak near the new size.
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
    need no temporary (large temporaries were measured to leave several MB of heap resident);
    a small ``src`` would mean very many copies, so it gets small cloned chunks instead.
    """
    step = max(src, _MIN_MOVE_ROWS)
    for i in range(0, n, step):
        chunk = buf[src + i : src + min(n, i + step)]
        if src < step:
            chunk = chunk.clone()
        buf[i : i + len(chunk)].copy_(chunk)


class Traj:
    """Whole episodes stored as contiguous columns plus an episode-boundary index.

    Episodes are added in two steps, as in the original machina: ``add_epis`` puts them in a
    pending set that the estimators in ``machina.traj.epi_functional`` read and extend, and
    ``register_epis`` appends them to the columns that training batches are drawn from.
    Pending episodes are kept flat too (``pending``: one array per key plus the lengths), so
    that the estimators and ``register_epis`` work on a few large arrays, never on one small
    array per episode.

    Parameters
    ----------
    max_steps : int, optional
        Bound on the number of stored steps. When set, ``add_traj`` and ``register_epis``
        evict the oldest *whole* episodes until ``num_step <= max_steps``.
    traj_device : str or torch.device, optional
        Device of the stored columns (the original machina's name, in its place); overrides
        ``device`` when given.
    ddp : bool
        Data-parallel batching under torch.distributed (``torchrun``): when a process group
        of W > 1 ranks is initialised, every rank holding the same steps, each batching
        method yields this rank's share of the minibatch the single-process code would
        yield. Rank 0 draws the minibatch (indices, permutation, priorities' draw) with its
        own RNG and broadcasts it; rank r keeps the contiguous slice
        ``[r * B // W, (r + 1) * B // W)``, so the shares are disjoint and differ in size by
        at most one (an ``iterate`` tail of fewer than W steps is skipped). Whether or not
        ``ddp`` is set, under an initialised process group the ranks agree on the number of
        minibatches of every call (the minimum; per-rank data may differ), and an error on
        one rank is raised on all of them, so that none waits in a collective.
    device : str or torch.device
        Device of the stored columns.

    Attributes
    ----------
    data_map : dict of str to torch.Tensor
        One column per key, shape (num_step, ...). ``a_is`` / ``e_is`` sub-keys are columns.
        The columns are views of storage that later ``register_epis`` / ``add_traj`` calls
        may overwrite in place (the FIFO moves rows); ``clone()`` a column to keep it.
    pending : FlatEpisodes or None
        Episodes added but not yet registered, as flat columns plus lengths.
    current_epis : list of dict or None
        The pending episodes as dicts of views (read-only; see the property).
    """

    def __init__(
        self,
        max_steps: int | None = None,
        traj_device: str | torch.device | None = None,
        ddp: bool = False,
        device: str | torch.device = "cpu",
    ):
        # traj_device is the original machina's name for device, in its place; it overrides
        # device when given, so Traj(n, "cpu") and Traj(n, device="cpu") agree.
        if traj_device is not None:
            device = traj_device
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps: expected a positive int or None, got {max_steps!r}")
        self.max_steps = max_steps
        self.ddp = bool(ddp)
        self.device = torch.device(device)
        self.data_map: dict[str, torch.Tensor] = {}
        # Column key -> "a_is" / "e_is" for keys that came from those groups.
        self.groups: dict[str, str] = {}
        self._epis_index = np.zeros(1, dtype=np.int64)
        # Column storage written in place (see _write): per key a buffer of capacity >= num_step
        # that only this Traj writes, and the row where the columns start. data_map[k] is the
        # view _bufs[k][_start:_start + num_step]; _views remembers the views handed out, so that
        # a column the user replaced (or one adopted zero-copy) is never written in place.
        self._bufs: dict[str, torch.Tensor] = {}
        self._views: dict[str, torch.Tensor] = {}
        self._start = 0
        self._pending: FlatEpisodes | None = None
        self._current_epis: list[Epi] | None = None
        # Importance-sampling exponent of the prioritised batches, annealed toward 1 by each
        # batch drawn (the original machina's attribute); None until the first one.
        self.pri_beta: float | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def num_step(self) -> int:
        return int(self._epis_index[-1])

    @property
    def num_epi(self) -> int:
        return len(self._epis_index) - 1

    @property
    def epis_index(self) -> np.ndarray:
        """Episode boundaries, shape (num_epi + 1,): episode i spans ``[idx[i], idx[i+1])``."""
        return self._epis_index

    def __len__(self) -> int:
        return self.num_step

    def __repr__(self) -> str:
        keys = ", ".join(self.data_map)
        return f"Traj(num_epi={self.num_epi}, num_step={self.num_step}, keys=[{keys}])"

    # ---------------------------------------------------------------- adding
    def add_epis(self, epis: Sequence[Epi]) -> None:
        """Queue whole episodes for the estimators and ``register_epis``.

        The episodes are concatenated here, once, into flat pending columns (``pending``);
        the given arrays are copied, never modified, and replace any pending episodes.

        Parameters
        ----------
        epis : list of dict
            Episodes as returned by a sampler: dicts of arrays sharing a first axis of length T.
        """
        self._set_pending(FlatEpisodes.from_epis(epis))

    @property
    def pending(self) -> FlatEpisodes | None:
        """The pending episodes as flat columns plus lengths, or None when there are none."""
        return self._pending

    @property
    def current_epis(self) -> list[Epi] | None:
        """The pending episodes as dicts of arrays, or None when there are none.

        Built on first access from the flat pending columns: the arrays are views of them,
        with ``a_is`` / ``e_is`` regrouped. Treat the list as read-only: assigning keys in its
        dicts does not reach ``register_epis``; assign a new list to ``current_epis`` (or call
        ``add_epis``) instead.
        """
        if self._pending is None:
            return None
        if self._current_epis is None:
            self._current_epis = self._pending.to_epis()
        return self._current_epis

    @current_epis.setter
    def current_epis(self, epis: Sequence[Epi] | None) -> None:
        self._set_pending(None if epis is None else FlatEpisodes.from_epis(epis))

    def _set_pending(self, pending: FlatEpisodes | None) -> None:
        self._pending = pending
        self._current_epis = None

    def __copy__(self) -> Traj:
        """A shallow copy sharing the stored columns; neither Traj then writes them in place."""
        new = object.__new__(Traj)
        new.__dict__.update(self.__dict__)
        new.data_map = dict(self.data_map)
        new.groups = dict(self.groups)
        # Both see the same rows: the next append of either copies them into a new buffer.
        self._disown()
        new._disown()
        return new

    def with_pending(self, pending: FlatEpisodes) -> Traj:
        """A shallow copy whose pending episodes are ``pending``; stored columns are shared."""
        new = copy.copy(self)
        new._set_pending(pending)
        return new

    def register_epis(self) -> None:
        """Append the pending episodes to the columns and clear them.

        On CPU the first registration adopts the pending arrays as the columns without a copy
        (the pending arrays are never modified in place, so sharing them is safe); the Traj
        never writes into adopted arrays, the next append copies them into its own buffer.
        """
        if self._pending is None or self._pending.num_epi == 0:
            raise ValueError("register_epis: no pending episodes; call add_epis(epis) first")
        pending = self._pending
        self._append(pending.columns, pending.groups, pending.lengths, adopt=True)
        self._set_pending(None)

    def add_traj(self, traj: Traj) -> None:
        """Append every stored episode of ``traj``; with ``max_steps``, evict the oldest first.

        The rows are copied: the two Trajs never share storage.

        Parameters
        ----------
        traj : Traj
            A Traj whose episodes have been registered.
        """
        if not isinstance(traj, Traj):
            raise TypeError(f"traj: expected a Traj, got {type(traj).__name__}")
        if traj.pending is not None and traj.pending.num_epi > 0:
            raise ValueError(
                f"traj: has {traj.pending.num_epi} pending episodes that add_traj would not "
                "add; call traj.register_epis() (after the estimators) before add_traj(traj)"
            )
        if traj.num_epi == 0:
            return
        lengths = np.diff(traj._epis_index)
        self._append(traj.data_map, traj.groups, lengths, adopt=False)

    def _append(
        self, columns: dict, groups: dict[str, str], lengths: np.ndarray, adopt: bool
    ) -> None:
        if self.max_steps is not None and lengths.max() > self.max_steps:
            raise ValueError(
                f"max_steps: a Traj bounded to {self.max_steps} steps cannot hold a whole "
                f"episode of {int(lengths.max())} steps; raise max_steps"
            )
        columns = {k: torch.as_tensor(v).to(self.device) for k, v in columns.items()}
        if self.num_epi > 0 and "pris" in self.data_map and "pris" not in columns:
            # Prioritised replay: new episodes enter with the highest priority stored, so
            # that each is replayed at least once soon (Schaul et al., 2016, algorithm 1).
            n = int(lengths.sum())
            stored = self.data_map["pris"]
            columns["pris"] = torch.full(
                (n,), self.get_max_pri(), dtype=stored.dtype, device=self.device
            )
        if self.num_epi > 0 and set(columns) != set(self.data_map):
            missing = sorted(set(self.data_map) ^ set(columns))
            raise ValueError(
                f"episodes: keys differ from the stored ones ({', '.join(missing)}); "
                "run the same estimators on every batch of episodes added to one Traj"
            )
        index = np.concatenate([self._epis_index, self.num_step + np.cumsum(lengths)])
        # FIFO: the oldest whole episodes leave first, until at most max_steps steps remain.
        drop = 0
        if self.max_steps is not None and index[-1] > self.max_steps:
            keep_from = int(np.searchsorted(index, index[-1] - self.max_steps))
            drop = int(index[keep_from])
            index = index[keep_from:] - drop
        if self.num_epi == 0 and adopt and drop == 0:
            self._disown()
            self.data_map = columns
        else:
            self._write(columns, drop)
        self.groups.update(groups)
        self._epis_index = index

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
        owned = self._owns() and all(self._bufs[k].dtype == c.dtype for k, c in columns.items())
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
            # reserved up front (the original examples use max_steps=10**12).
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

    # -------------------------------------------------------------- batching
    def _batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        # index_select: half the time of v[indices] per column (measured, batch 256, CPU).
        return {k: torch.index_select(v, 0, indices) for k, v in self.data_map.items()}

    def _population(self, indices) -> torch.Tensor | None:
        """The steps a batching call draws from, (n,) int64 on the Traj's device; None: all.

        ``indices`` may be integer step indices or a boolean mask of length ``num_step``.
        """
        if indices is None:
            return None
        idx = torch.as_tensor(indices.copy() if isinstance(indices, np.ndarray) else indices)
        if idx.dtype == torch.bool and idx.shape == (self.num_step,):
            idx = torch.nonzero(idx).flatten()
        if idx.dim() != 1 or idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise ValueError(
                f"indices: expected a 1-d array of int step indices, got dtype {idx.dtype} "
                f"and shape {tuple(idx.shape)}"
            )
        if len(idx) and not (0 <= int(idx.min()) and int(idx.max()) < self.num_step):
            raise ValueError(
                f"indices: expected step indices in [0, {self.num_step}), got values in "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        return idx.to(device=self.device, dtype=torch.int64)

    def _plan(
        self, group: _ddp.Group, batch_size: int, available: int, unit: str, count
    ) -> tuple[int, int]:
        """The checked batch size and the number of batches all ranks agree on (see _ddp).

        ``count(batch_size)`` is this rank's number of batches; an error on any rank is
        raised on every rank, so that none is left waiting in a collective.
        """
        error, n = None, 0
        try:
            batch_size = check_batch_size(batch_size, available, unit)
            group.check_share(batch_size)
            n = count(batch_size)
        except ValueError as e:
            error = e
        return batch_size, group.agree(n, self.num_step, error)

    def _order(self, group: _ddp.Group, n: int, shuffle: bool) -> torch.Tensor:
        """A permutation of ``range(n)`` (the identity without ``shuffle``), the same on all
        ranks of a ``ddp`` Traj (drawn on rank 0)."""

        def make() -> torch.Tensor:
            if shuffle:
                return torch.randperm(n, device=self.device)
            return torch.arange(n, device=self.device)

        return group.same(make, (n,), torch.int64).to(self.device)

    @staticmethod
    def _num_chunks(n: int, batch_size: int, group: _ddp.Group) -> int:
        """Chunks of ``batch_size`` in ``n`` items; a last smaller chunk counts unless a
        ``ddp`` rank would get nothing of it (fewer items than ranks)."""
        full, rest = divmod(n, batch_size)
        return full + (rest >= (group.world if group.split else 1))

    def iterate(
        self, batch_size: int, epoch: int = 1, indices=None, shuffle: bool = True
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Minibatches that visit every step (of ``indices``) exactly once per epoch.

        Parameters
        ----------
        batch_size : int
            Steps per batch; the last batch of an epoch may be smaller.
        epoch : int
            Number of passes over the data.
        indices : array of int or bool, optional
            Steps to iterate over (step indices, or a mask over ``num_step``); default all.
        shuffle : bool
            Visit the steps in a new random order each epoch; else in the order given.

        Yields
        ------
        dict of str to torch.Tensor
            Each column indexed by the batch's steps, shape (B, ...). With ``Traj(ddp=True)``
            under torch.distributed, this rank's share of each batch (see ``Traj``).
        """
        group = _ddp.Group(self.ddp)
        pop = self._population(indices)
        n = self.num_step if pop is None else len(pop)
        batch_size, count = self._plan(
            group, batch_size, n, "steps", lambda b: self._num_chunks(n, b, group)
        )
        for _ in range(epoch):
            order = self._order(group, n, shuffle)
            if pop is not None:
                order = pop[order]
            for i in range(count):
                yield self._batch(group.share(order[i * batch_size : (i + 1) * batch_size]))

    def iterate_once(
        self, batch_size: int, indices=None, shuffle: bool = True
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of ``iterate``."""
        return self.iterate(batch_size, 1, indices, shuffle)

    def iterate_step(
        self, batch_size: int, step: int = 1, indices=None, shuffle: bool = True
    ) -> Iterator[dict[str, torch.Tensor]]:
        """``step`` minibatches taken in turn from one order of the steps, cycling.

        The steps (of ``indices``) are put in one random order (or kept in order without
        ``shuffle``) and cut into chunks of ``batch_size``, the last one smaller; the batches
        are those chunks in turn, starting again at the first after the last.
        """
        group = _ddp.Group(self.ddp)
        pop = self._population(indices)
        n = self.num_step if pop is None else len(pop)
        batch_size, count = self._plan(group, batch_size, n, "steps", lambda b: step)
        order = self._order(group, n, shuffle)
        if pop is not None:
            order = pop[order]
        chunks = max(1, self._num_chunks(n, batch_size, group))
        for i in range(count):
            j = i % chunks
            yield self._batch(group.share(order[j * batch_size : (j + 1) * batch_size]))

    def full_batch(self, epoch: int = 1, return_indices: bool = False) -> Iterator:
        """Every stored step as one batch, ``epoch`` times.

        Yields
        ------
        dict of str to torch.Tensor
            The columns (N, ...) (views: do not modify them; with ``Traj(ddp=True)`` this
            rank's share of the steps, copied); with ``return_indices`` the pair
            ``(batch, indices)``, ``indices`` (N,) int64.
        """
        group = _ddp.Group(self.ddp)
        _, count = self._plan(group, self.num_step, self.num_step, "steps", lambda b: epoch)
        indices = group.share(torch.arange(self.num_step, device=self.device))
        for _ in range(count):
            batch = self._batch(indices) if group.split else dict(self.data_map)
            yield (batch, indices) if return_indices else batch

    def iterate_epi(self, shuffle: bool = True) -> Iterator[dict[str, torch.Tensor]]:
        """Every stored episode once, as a dict of its columns (T, ...) (views).

        With ``Traj(ddp=True)`` under torch.distributed, each rank gets its own contiguous
        share of one order of the episodes, ``num_epi // world`` each.
        """
        group = _ddp.Group(self.ddp)
        per_rank = self.num_epi // group.world if group.split else self.num_epi
        error = None
        if self.num_epi == 0:
            error = ValueError("iterate_epi: the Traj holds no episodes; call register_epis()")
        elif per_rank == 0:
            error = ValueError(
                f"iterate_epi: Traj(ddp=True) shares the episodes between {group.world} "
                f"ranks; expected at least {group.world}, the Traj holds {self.num_epi}"
            )
        count = group.agree(per_rank, self.num_step, error)
        order = self._order(group, self.num_epi, shuffle).tolist()
        lo = group.rank * per_rank if group.split else 0
        index = self._epis_index
        for i in order[lo : lo + count]:
            yield {k: v[index[i] : index[i + 1]] for k, v in self.data_map.items()}

    def random_batch(
        self, batch_size: int, epoch: int = 1, indices=None, return_indices: bool = False
    ) -> Iterator:
        """``epoch`` batches of steps drawn uniformly with replacement.

        Parameters
        ----------
        batch_size : int
        epoch : int
        indices : array of int or bool, optional
            Steps to draw from (step indices, or a mask over ``num_step``); default all. A
            bool in this place is taken as ``return_indices`` (the 0.x-era positional form
            ``random_batch(batch_size, epoch, return_indices)``).
        return_indices : bool

        Yields
        ------
        dict of str to torch.Tensor
            Columns of shape (batch_size, ...); with ``return_indices`` the pair
            ``(batch, indices)`` where ``indices`` has shape (batch_size,). With
            ``Traj(ddp=True)`` under torch.distributed, this rank's share of each.
        """
        if isinstance(indices, bool):
            indices, return_indices = None, indices
        group = _ddp.Group(self.ddp)
        pop = self._population(indices)
        n = self.num_step if pop is None else len(pop)
        batch_size, count = self._plan(group, batch_size, n, "steps", lambda b: epoch)
        for _ in range(count):
            drawn = group.same(
                lambda: torch.randint(0, n, (batch_size,), device=self.device),
                (batch_size,),
                torch.int64,
            )
            drawn = group.share(drawn.to(self.device))
            if pop is not None:
                drawn = pop[drawn]
            batch = self._batch(drawn)
            yield (batch, drawn) if return_indices else batch

    def random_batch_once(
        self, batch_size: int, indices=None, return_indices: bool = False
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch of ``random_batch``."""
        if isinstance(indices, bool):
            indices, return_indices = None, indices
        return next(self.random_batch(batch_size, 1, indices, return_indices))

    def iterate_rnn(
        self, batch_size: int, num_epi_per_seq: int = 1, epoch: int = 1
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled batches of whole episodes as zero-padded, time-major sequences.

        Parameters
        ----------
        batch_size : int
            Sequences per batch; the last batch of an epoch may be smaller.
        num_epi_per_seq : int
            Consecutive episodes joined into one sequence (the hidden state is reset at each
            episode start through ``h_masks``).
        epoch : int
            Number of passes over the data.

        Yields
        ------
        dict of str to torch.Tensor
            Each column as (T_max, B, ...), plus ``out_masks`` (T_max, B), 1.0 on real steps
            and 0.0 on padding, and ``h_masks`` (T_max, B), 1.0 where an episode starts.
            With ``Traj(ddp=True)`` under torch.distributed, this rank's share of the B
            sequences (T_max still that of the whole batch).
        """
        if num_epi_per_seq < 1:
            raise ValueError(f"num_epi_per_seq: expected an int >= 1, got {num_epi_per_seq!r}")
        seq_index = self._epis_index[::num_epi_per_seq]
        if seq_index[-1] != self.num_step:
            seq_index = np.append(seq_index, self.num_step)
        num_seq = len(seq_index) - 1
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(
            group, batch_size, num_seq, "sequences", lambda b: self._num_chunks(num_seq, b, group)
        )
        starts = torch.as_tensor(seq_index[:-1], device=self.device)
        lengths = torch.as_tensor(np.diff(seq_index), device=self.device)
        epi_starts = torch.zeros(self.num_step, dtype=torch.float32, device=self.device)
        epi_starts[torch.as_tensor(self._epis_index[:-1], device=self.device)] = 1.0
        columns = {**self.data_map, "h_masks": epi_starts}
        for _ in range(epoch):
            order = self._order(group, num_seq, True)
            for i in range(count):
                seqs = order[i * batch_size : (i + 1) * batch_size]
                time_steps = int(lengths[seqs].max())
                mine = group.share(seqs)
                yield gather_sequences(columns, starts[mine], lengths[mine], time_steps)

    # ----------------------------------------------------------- replay memory
    def get_max_pri(self) -> float:
        """The highest stored priority (``pris``), or 1.0 when there is none yet.

        New episodes get it (``ef.set_all_pris(traj, off_traj.get_max_pri())``; ``add_traj``
        fills it in by itself for episodes without ``pris``).
        """
        pris = self.data_map.get("pris")
        if pris is None or len(pris) == 0:
            return 1.0
        return float(pris.max())

    def _pris(self, key: str, added_by: str) -> torch.Tensor:
        if key not in self.data_map:
            raise KeyError(
                f"{key}: the Traj has no '{key}' column; add it with {added_by} before "
                "register_epis()"
            )
        return self.data_map[key]

    def prioritized_random_batch(
        self,
        batch_size: int,
        epoch: int = 1,
        return_indices: bool = False,
        mode: str = "proportional",
        alpha: float = 0.6,
        init_beta: float = 0.4,
        beta_step: float = 0.00025 / 4,
    ) -> Iterator:
        """``epoch`` batches of steps drawn with prioritised replay (Schaul et al., 2016).

        Step i is drawn with probability ``P(i) = p_i / sum_j p_j``: in ``proportional``
        mode ``p_i`` is the stored ``pris`` (already ``(|td| + eps) ** alpha``, see
        ``traj_functional.update_pris``); in ``rank_based`` mode ``p_i = rank(i) ** -alpha``,
        rank 1 for the highest ``pris``. Each batch carries ``is_weights``
        ``w_i = (N P(i)) ** -beta / max_j w_j`` (max over the whole memory), with ``beta``
        starting at ``init_beta`` and growing by ``beta_step`` per batch up to 1 (kept in
        ``pri_beta`` across calls).

        Parameters
        ----------
        batch_size : int
            Steps per batch, drawn with replacement.
        epoch : int
            Number of batches.
        return_indices : bool
            Also yield the drawn step indices, for ``traj_functional.update_pris``.
        mode : {"proportional", "rank_based"}
        alpha : float
            Rank-based mode's exponent, >= 0 (proportional priorities already include it).
        init_beta, beta_step : float
            Importance-sampling exponent's start, in [0, 1], and increment per batch, >= 0.

        Yields
        ------
        dict of str to torch.Tensor
            Columns (B, ...) plus ``is_weights`` (B,) float32; with ``return_indices`` the
            pair ``(batch, indices)``, ``indices`` (B,) int64.
        """
        _replay.check_mode(mode)
        _replay.check_pri_args(alpha, init_beta, beta_step)
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(group, batch_size, self.num_step, "steps", lambda b: epoch)
        for _ in range(count):
            indices, is_weights = self._prioritized_draw(
                group, lambda: self._pris("pris", "ef.set_all_pris or ef.compute_pris"),
                "pris", "ef.set_all_pris or traj_functional.update_pris",
                mode, alpha, batch_size, init_beta, beta_step,
            )  # fmt: skip
            batch = self._batch(indices)
            batch["is_weights"] = is_weights
            yield (batch, indices) if return_indices else batch

    def _prioritized_draw(
        self,
        group: _ddp.Group,
        get_pris,
        key: str,
        fix_hint: str,
        mode: str,
        alpha: float,
        batch_size: int,
        init_beta: float,
        beta_step: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions drawn in ``get_pris()`` (B,) and their importance weights (B,).

        Anneals ``pri_beta``. With ``Traj(ddp=True)``, rank 0 draws (from its priorities)
        and every rank keeps its share of both.
        """
        beta = float(init_beta) if self.pri_beta is None else self.pri_beta + float(beta_step)
        beta = min(1.0, beta)

        def make() -> torch.Tensor:
            pris = get_pris()
            _replay.check_pris(pris, key, fix_hint)
            weights = _replay.sampling_weights(pris, mode, alpha)
            drawn = _replay.draw(weights, batch_size)
            is_weights = _replay.is_weights(weights, drawn, beta)
            return torch.stack([drawn.to(torch.float64), is_weights.to(torch.float64)])

        packed = group.same(make, (2, batch_size), torch.float64).to(self.device)
        self.pri_beta = beta
        packed = group.share(packed.T)
        return packed[:, 0].to(torch.int64), packed[:, 1].to(torch.float32)

    def prioritized_random_batch_once(
        self,
        batch_size: int,
        return_indices: bool = False,
        mode: str = "proportional",
        alpha: float = 0.6,
        init_beta: float = 0.4,
        beta_step: float = 0.00025 / 4,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch of ``prioritized_random_batch``."""
        batches = self.prioritized_random_batch(
            batch_size, 1, return_indices, mode, alpha, init_beta, beta_step
        )
        return next(batches)

    def _seq_pris(self, added_by: str, cand: torch.Tensor) -> torch.Tensor:
        return self._pris("seq_pris", added_by)[cand]

    def _seq_length(self, seq_length: int | None) -> int:
        if seq_length is None:
            return int(np.diff(self._epis_index).max()) if self.num_epi else 1
        if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 1:
            raise ValueError(f"seq_length: expected an int >= 1 or None, got {seq_length!r}")
        return seq_length

    def _windows(self, starts: torch.Tensor, seq_length: int) -> dict[str, torch.Tensor]:
        """Time-major windows (L, B, ...) from flat ``starts`` (B,), cut at episode ends."""
        index = torch.as_tensor(self._epis_index, device=self.device)
        epi = torch.searchsorted(index, starts, right=True) - 1
        lengths = torch.clamp(index[epi + 1] - starts, max=seq_length)
        batch = gather_sequences(self.data_map, starts, lengths, time_steps=seq_length)
        h_masks = torch.zeros(seq_length, len(starts), device=self.device)
        h_masks[0] = (starts == index[epi]).to(h_masks.dtype)
        batch["h_masks"] = h_masks
        return batch

    def random_batch_rnn(
        self,
        batch_size: int,
        seq_length: int | None = None,
        epoch: int = 1,
        return_indices: bool = False,
    ) -> Iterator:
        """``epoch`` batches of fixed-length windows drawn uniformly, time-major.

        A window is ``seq_length`` consecutive steps of one episode and never crosses an
        episode boundary: an episode of T >= L steps has ``T - L + 1`` windows, a shorter one
        a single window of its T steps, zero-padded to L (``out_masks``). Every window is
        equally likely (not every episode: long episodes are not under-sampled).

        Coverage is not uniform over steps: in an episode of T >= L steps, step t lies in
        ``min(t + 1, T - t, L, T - L + 1)`` windows, so the first and the last ``L - 1``
        steps are replayed less than the middle ones, the last step (an episode's only
        terminal step) and the first down to a single window, i.e. ``1 / L`` of a middle
        step's rate. Keep L well below the episode length, or use windows of whole episodes
        (``seq_length=None``), when the episode ends matter.

        Parameters
        ----------
        batch_size : int
            Windows per batch, drawn with replacement.
        seq_length : int, optional
            L; default the longest stored episode (whole episodes, as the original).
        epoch : int
            Number of batches.
        return_indices : bool
            Also yield each window's flat start index (B,).

        Yields
        ------
        dict of str to torch.Tensor
            Each column as (L, B, ...), plus ``out_masks`` (L, B), 1.0 on real steps, and
            ``h_masks`` (L, B), 1.0 at t = 0 where the window starts its episode (the
            hidden state is then exactly the initial one; otherwise burn-in approximates it).
        """
        seq_length = self._seq_length(seq_length)
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(group, batch_size, self.num_step, "steps", lambda b: epoch)
        cand = _replay.window_starts(self._epis_index, seq_length)
        cand = torch.as_tensor(cand, device=self.device)
        for _ in range(count):
            drawn = group.same(
                lambda: torch.randint(0, len(cand), (batch_size,), device=self.device),
                (batch_size,),
                torch.int64,
            )
            starts = cand[group.share(drawn.to(self.device))]
            batch = self._windows(starts, seq_length)
            yield (batch, starts) if return_indices else batch

    def prioritized_random_batch_rnn(
        self,
        batch_size: int,
        seq_length: int,
        epoch: int = 1,
        return_indices: bool = False,
        mode: str = "proportional",
        alpha: float = 0.6,
        init_beta: float = 0.4,
        beta_step: float = 0.00025 / 4,
    ) -> Iterator:
        """``epoch`` batches of windows drawn by their priority ``seq_pris`` (R2D2).

        Windows as in ``random_batch_rnn``; the window starting at step s is drawn with
        probability proportional to ``seq_pris[s]`` (``ef.compute_seq_pris`` with the same
        ``seq_length``), or by rank in ``rank_based`` mode. ``is_weights`` (B,) as in
        ``prioritized_random_batch``, N being the number of windows. The window set, and
        so the lower coverage of each episode's first and last ``seq_length - 1`` steps
        (the terminal step lies in a single window), is that of ``random_batch_rnn``.

        Yields
        ------
        dict of str to torch.Tensor
            Columns (L, B, ...), ``out_masks``, ``h_masks`` and ``is_weights`` (B,); with
            ``return_indices`` the pair ``(batch, starts)``, ``starts`` (B,) int64.
        """
        _replay.check_mode(mode)
        _replay.check_pri_args(alpha, init_beta, beta_step)
        seq_length = self._seq_length(seq_length)
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(group, batch_size, self.num_step, "steps", lambda b: epoch)
        added_by = f"ef.compute_seq_pris(traj, {seq_length})"
        cand, cand_of = None, None
        for _ in range(count):
            if cand_of is not self._epis_index:  # episodes added or evicted since the last
                cand_of = self._epis_index
                cand = _replay.window_starts(cand_of, seq_length)
                cand = torch.as_tensor(cand, device=self.device)
            drawn, is_weights = self._prioritized_draw(
                group, functools.partial(self._seq_pris, added_by, cand),
                "seq_pris", f"{added_by} (the same seq_length)",
                mode, alpha, batch_size, init_beta, beta_step,
            )  # fmt: skip
            starts = cand[drawn]
            batch = self._windows(starts, seq_length)
            batch["is_weights"] = is_weights
            yield (batch, starts) if return_indices else batch

    def prioritized_random_batch_rnn_once(
        self,
        batch_size: int,
        seq_length: int,
        return_indices: bool = False,
        mode: str = "proportional",
        alpha: float = 0.6,
        init_beta: float = 0.4,
        beta_step: float = 0.00025 / 4,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch of ``prioritized_random_batch_rnn``."""
        batches = self.prioritized_random_batch_rnn(
            batch_size, seq_length, 1, return_indices, mode, alpha, init_beta, beta_step
        )
        return next(batches)

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

    # ------------------------------------------------------------ conversion
    def to(self, device: str | torch.device) -> Traj:
        """Move every column to ``device`` in place; returns self."""
        self.device = torch.device(device)
        moved = {k: v.to(self.device) for k, v in self.data_map.items()}
        if any(moved[k] is not v for k, v in self.data_map.items()):
            self._disown()  # only the live rows moved; the next append allocates a buffer
        self.data_map = moved
        return self

    def epis(self) -> list[Epi]:
        """Stored episodes as dicts of numpy arrays (views of the columns on CPU)."""
        columns = {k: v.cpu().numpy() for k, v in self.data_map.items()}
        return split_columns(columns, self.groups, np.diff(self._epis_index))

    def save(self, path: str | os.PathLike) -> None:
        """Write the stored episodes to an ``.npz`` file that loads without pickle.

        Every column keeps its dtype and values exactly, and the prioritised-replay exponent
        ``pri_beta`` is kept, so a reloaded memory resumes its annealing; pending episodes are
        not saved.

        The file is replaced atomically: written to a temporary file in the same directory,
        flushed to disk, then renamed over ``path``; a save killed half way leaves the
        previous file intact.
        """
        arrays = {f"col:{k}": v.cpu().numpy() for k, v in self.data_map.items()}
        arrays["epis_index"] = self._epis_index
        arrays["group_keys"] = np.array(list(self.groups), dtype=np.str_)
        arrays["group_names"] = np.array(list(self.groups.values()), dtype=np.str_)
        if self.max_steps is not None:
            arrays["max_steps"] = np.array(self.max_steps, dtype=np.int64)
        if self.pri_beta is not None:
            arrays["pri_beta"] = np.array(self.pri_beta, dtype=np.float64)
        _files.write_atomic(path, arrays)

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", ddp: bool = False
    ) -> Traj:
        """Read a Traj written by ``save``; never unpickles (``allow_pickle=False``).

        The file is validated before anything is built: a ValueError names the path and what
        is wrong (not an ``.npz`` archive, a missing member, episode boundaries that do not
        start at 0, increase and end at the columns' length, columns of other lengths).
        """
        f = _files.read_checked(path)
        traj = cls(max_steps=f.max_steps, ddp=ddp, device=device)
        traj._epis_index = f.epis_index
        traj.data_map = {k: torch.from_numpy(v).to(traj.device) for k, v in f.columns.items()}
        traj.groups = f.groups
        traj.pri_beta = f.pri_beta
        return traj
