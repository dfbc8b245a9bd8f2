"""Uniform batches of a Traj (steps, whole episodes, windows) and the index arithmetic they
share."""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from machina.traj import _ddp, _replay
from machina.utils.batch_share import BatchShare, SharedBatch, note_share


def _whole(name: str, value: Any, low: int, expected: str) -> int:
    """``value`` as an int of at least ``low``, or a ValueError naming ``name``."""
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected {expected}, got {value!r}") from None
    if value < low:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def check_epoch(epoch: int) -> int:
    """``epoch`` as an int; a ValueError naming it when it is negative or not an integer
    (a negative one yielded no batch: a run that trains on nothing)."""
    if isinstance(epoch, float) and epoch.is_integer():  # e.g. computed with a division
        epoch = int(epoch)
    return _whole("epoch", epoch, 0, "an int >= 0")


# the unit of a batching call over the steps its ``indices`` select
SELECTED = "steps selected"


def check_batch_size(
    batch_size: int, available: int, unit: str, above: str = "refuse", fn_name: str = ""
) -> int:
    """``batch_size`` as an int: a ValueError naming it unless it is positive, and what a
    size above ``available`` becomes by ``above``: ``"refuse"``, a ValueError; ``"draw"``, kept
    (draws with replacement, as machina 0.x and stable-baselines3 make them); ``"cap"``,
    ``available`` with a warning naming ``fn_name`` (one batch of all of them, as
    stable-baselines3's rollout buffer iterates; machina 0.x yielded no batch, so small runs
    of its scripts trained on nothing)."""
    batch_size = _whole("batch_size", batch_size, 1, "a positive int")
    if available == 0 and unit == SELECTED:
        raise ValueError("indices: expected at least one step, got none (an empty selection)")
    if available == 0:
        raise ValueError("batch_size: the Traj holds no steps; call register_epis() first")
    if batch_size <= available or above == "draw":
        return batch_size
    if above == "cap":
        # one text per batch_size (not per step count): warned once per call site, not at
        # every iteration of a loop whose episodes vary in length (from the caller of
        # fn_name, through _plan)
        warnings.warn(
            f"{fn_name}: batch_size={batch_size} is larger than the {unit} to iterate over: "
            "each batch holds all of them",
            stacklevel=5,
        )
        return available
    raise ValueError(
        f"batch_size: expected at most the {available} {unit} the Traj holds, got {batch_size}"
    )


def gather_sequences(
    columns: dict[str, torch.Tensor],
    starts: torch.Tensor,
    lengths: torch.Tensor,
    time_steps: int | None = None,
) -> dict[str, torch.Tensor]:
    """Gather flat columns into zero-padded time-major sequences.

    Parameters
    ----------
    columns : dict of str to torch.Tensor
        Flat columns, shape (N, ...).
    starts, lengths : torch.Tensor
        Start index and length of each sequence, shape (B,).
    time_steps : int, optional
        Padded length T; default the longest sequence, ``T_max``.

    Returns
    -------
    dict of str to torch.Tensor
        Each column as (T, B, ...) with zeros past each sequence's end, plus
        ``out_masks`` (T, B) float32, 1.0 on real steps.
    """
    if time_steps is None:
        time_steps = int(lengths.max())
    t = torch.arange(time_steps, device=starts.device)[:, None]
    valid = t < lengths[None, :]
    indices = torch.where(valid, starts[None, :] + t, starts[None, :])
    batch = {}
    flat = indices.reshape(-1)
    for key, col in columns.items():
        gathered = take_rows(col, flat).reshape(*indices.shape, *col.shape[1:])
        mask = valid.reshape(valid.shape + (1,) * (col.dim() - 1))
        batch[key] = torch.where(mask, gathered, torch.zeros((), dtype=col.dtype))
    batch["out_masks"] = valid.to(torch.float32)
    return batch


# torch has no index_select for 1-D unsigned tensors wider than 8 bits
_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


def take_rows(column: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``column[indices]`` along the first axis: index_select, twice as fast as indexing
    on CPU, where torch has it."""
    if column.dtype in _UNSIGNED:
        return column[indices]
    return torch.index_select(column, 0, indices)


def _numpy_view(column: torch.Tensor) -> np.ndarray | None:
    """``column``'s memory as a numpy array, None for what numpy cannot hold (a column that
    requires grad, bfloat16)."""
    try:
        return column.numpy()
    except (RuntimeError, TypeError):
        return None


class Batching:
    """The batching job of ``Traj``: minibatches of steps, of whole episodes and of windows,
    uniform, each shared between torch.distributed ranks as ``Traj(ddp=True)`` asks.

    Expects ``data_map``, ``_epis_index``, ``device``, ``ddp``, ``num_step`` / ``num_epi``
    and ``_rng``, the ``BatchRNG`` every draw comes from (never torch's global generator; see
    ``_rng``). Under ``Traj(ddp=True)`` only rank 0 draws, so only rank 0's generator moves.
    """

    def _batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``indices`` (B,) int64, in range, of every column: a dict of (B, ...)."""
        if indices.device.type != "cpu" or self.device.type != "cpu":
            self.__dict__.pop("_np_views", None)
            # index_select per column: faster than v[indices] (example/benchmarks/README.md).
            return {k: take_rows(v, indices) for k, v in self.data_map.items()}
        # numpy's take on the columns' memory: cheaper than index_select for rows of several
        # values (7.2 against 8.7 us for (1M, 3), 256 random rows) and, between gradient
        # steps (code out of the caches), for single values too. Each column's numpy view is
        # made once per column object and memory (Tensor.numpy costs ~1 us a call there):
        # _np_views keeps it with the column and its address (share_memory_ moves a column's
        # memory under the same object); torch's index_select for the rest.
        steps = indices.numpy()
        views = self.__dict__.setdefault("_np_views", {})
        batch = {}
        for k, v in self.data_map.items():
            entry = views.get(k)
            if entry is None or entry[0] is not v or entry[1] != v.data_ptr():
                entry = views[k] = (v, v.data_ptr(), _numpy_view(v))
            array = entry[2]
            if array is None or v.requires_grad:
                batch[k] = take_rows(v, indices)
            else:
                batch[k] = torch.from_numpy(array.take(steps, 0))
        return batch

    def _shared(
        self, group: _ddp.Group, batch: dict[str, torch.Tensor], size: int, axis: int = 0
    ) -> dict[str, torch.Tensor]:
        """``batch``, this rank's share of a minibatch of ``size`` items (along ``axis`` of its
        tensors), as a ``SharedBatch`` when the ranks share minibatches, every rank's global
        generator made rank 0's at the call's first: the losses' noise then is the single
        process's (``machina.utils.batch_share``). Else ``batch`` as it is."""
        if not group.split:
            return batch
        note_share()  # for optimizer_step's check that such a loss's gradient is averaged
        group.sync_rng()
        start, stop = group.bounds(size)
        return SharedBatch(batch, BatchShare(start, stop, size, axis))

    def _population_checked(self, indices) -> tuple[torch.Tensor | None, ValueError | None]:
        """``_population(indices)``, or None and its error (for ``_plan`` to raise on every
        rank: raised here, on one rank, it left the others waiting in a collective)."""
        try:
            return self._population(indices), None
        except ValueError as e:
            return None, e

    def _population(self, indices) -> torch.Tensor | None:
        """The steps a batching call draws from, (n,) int64 on the Traj's device; None: all.

        ``indices`` may be integer step indices or a boolean mask of length ``num_step``.
        """
        if indices is None:
            return None
        try:
            idx = torch.as_tensor(indices.copy() if isinstance(indices, np.ndarray) else indices)
        except (TypeError, RuntimeError) as e:  # [0, None], "ab", a set
            raise ValueError(f"indices: expected step indices or a boolean mask ({e})") from None
        if idx.dtype == torch.bool:
            if idx.shape != (self.num_step,):
                raise ValueError(
                    f"indices: a boolean mask must have one entry per step, shape "
                    f"({self.num_step},), got shape {tuple(idx.shape)}"
                )
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
        self,
        group: _ddp.Group,
        batch_size: int,
        available: int,
        unit: str,
        count,
        above: str = "refuse",
        fn_name: str = "",
        refused: ValueError | None = None,
    ) -> tuple[int, int]:
        """The checked batch size and the number of batches all ranks agree on (see _ddp).

        ``count(batch_size)`` is this rank's number of batches; an error on any rank is
        raised on every rank, so that none is left waiting in a collective. ``above`` and
        ``fn_name``: what a batch above ``available`` becomes (``check_batch_size``).
        ``refused``: an error found before (bad ``indices``), raised on every rank likewise.
        """
        error, n = refused, 0
        if error is None:
            try:
                batch_size = check_batch_size(batch_size, available, unit, above, fn_name)
                group.check_share(batch_size)
                n = count(batch_size)
            except ValueError as e:
                error = e
        fingerprint = group.fingerprint(self._epis_index, self.data_map)
        size = batch_size if error is None else 0
        return batch_size, group.agree(n, self.num_step, error, fingerprint, size)

    def _order(self, group: _ddp.Group, n: int, shuffle: bool) -> torch.Tensor:
        """A permutation of ``range(n)`` (the identity without ``shuffle``), the same on all
        ranks of a ``ddp`` Traj (drawn on rank 0)."""

        def make() -> torch.Tensor:
            if shuffle:
                return torch.randperm(n, generator=self._rng.generator()).to(self.device)
            return torch.arange(n, device=self.device)

        return group.same(make, (n,), torch.int64).to(self.device)

    def _randint(self, high: int, size: int) -> torch.Tensor:
        """``size`` indices drawn uniformly from ``range(high)``, on the Traj's device."""
        return torch.randint(0, high, (size,), generator=self._rng.generator()).to(self.device)

    @staticmethod
    def _num_chunks(n: int, batch_size: int) -> int:
        """Chunks of ``batch_size`` in ``n`` items, a last smaller one included (with
        ``ddp``, one of fewer items than ranks leaves some ranks an empty share, whose
        losses are 0: their averaged gradients are still the chunk's)."""
        return -(-n // batch_size)

    def iterate(
        self, batch_size: int, epoch: int = 1, indices=None, shuffle: bool = True
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Minibatches that visit every step (of ``indices``) exactly once per epoch.

        Parameters
        ----------
        batch_size : int
            Steps per batch; the last batch of an epoch may be smaller. Above the steps
            given, each epoch is one batch of all of them (with a warning).
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
        epoch = check_epoch(epoch)
        group = _ddp.Group(self.ddp)
        pop, refused = self._population_checked(indices)
        n = self.num_step if pop is None else len(pop)
        unit = "steps" if pop is None else SELECTED
        batch_size, count = self._plan(
            group, batch_size, n, unit, lambda b: self._num_chunks(n, b), "cap", "iterate", refused
        )
        for _ in range(epoch):
            order = self._order(group, n, shuffle)
            if pop is not None:
                order = pop[order]
            for i in range(count):
                chunk = order[i * batch_size : (i + 1) * batch_size]
                yield self._shared(group, self._batch(group.share(chunk)), len(chunk))

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
        pop, refused = self._population_checked(indices)
        n = self.num_step if pop is None else len(pop)
        unit = "steps" if pop is None else SELECTED
        batch_size, count = self._plan(
            group, batch_size, n, unit, lambda b: step, "cap", "iterate_step", refused
        )
        order = self._order(group, n, shuffle)
        if pop is not None:
            order = pop[order]
        chunks = max(1, self._num_chunks(n, batch_size))
        for i in range(count):
            j = i % chunks
            chunk = order[j * batch_size : (j + 1) * batch_size]
            yield self._shared(group, self._batch(group.share(chunk)), len(chunk))

    def full_batch(self, epoch: int = 1, return_indices: bool = False) -> Iterator:
        """Every stored step as one batch, ``epoch`` times.

        Yields
        ------
        dict of str to torch.Tensor
            The columns (N, ...) (views: do not modify them; with ``Traj(ddp=True)`` this
            rank's share of the steps, copied); with ``return_indices`` the pair
            ``(batch, indices)``, ``indices`` (N,) int64.
        """
        epoch = check_epoch(epoch)
        group = _ddp.Group(self.ddp)
        _, count = self._plan(group, self.num_step, self.num_step, "steps", lambda b: epoch)
        indices = group.share(torch.arange(self.num_step, device=self.device))
        for _ in range(count):
            if group.split:
                batch = self._shared(group, self._batch(indices), self.num_step)
            else:
                batch = dict(self.data_map)
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
        fingerprint = group.fingerprint(self._epis_index, self.data_map)
        count = group.agree(per_rank, self.num_step, error, fingerprint)
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
            Steps per batch, drawn with replacement (so it may exceed the steps held).
        epoch : int
        indices : array of int or bool, optional
            The steps of every batch (step indices, or a mask over ``num_step``), in a new
            random order each time (machina 0.x's semantics): ``batch_size`` is then not
            used. A bool in this place is taken as ``return_indices`` (the 0.x-era
            positional form ``random_batch(batch_size, epoch, return_indices)``).
        return_indices : bool

        Yields
        ------
        dict of str to torch.Tensor
            Columns of shape (batch_size, ...) (``(len(indices), ...)`` with ``indices``);
            with ``return_indices`` the pair ``(batch, indices)``. With ``Traj(ddp=True)``
            under torch.distributed, this rank's share of each.
        """
        epoch = check_epoch(epoch)
        if isinstance(indices, bool):
            indices, return_indices = None, indices
        group = _ddp.Group(self.ddp)
        pop, refused = self._population_checked(indices)
        n = self.num_step if pop is None else len(pop)
        if pop is not None:
            batch_size = n or batch_size  # none selected: refused by _plan, named
        unit = "steps" if pop is None else SELECTED
        above = "draw" if pop is None else "refuse"
        batch_size, count = self._plan(
            group, batch_size, n, unit, lambda b: epoch, above, "", refused
        )
        for _ in range(count):
            if pop is not None:
                drawn = self._order(group, n, True)
            else:
                drawn = group.same(lambda: self._randint(n, batch_size), (batch_size,), torch.int64)
            drawn = group.share(drawn.to(self.device))
            if pop is not None:
                drawn = pop[drawn]
            batch = self._shared(group, self._batch(drawn), batch_size)
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
            Sequences per batch, at most the number held; the last batch of an epoch may
            be smaller.
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
        epoch = check_epoch(epoch)
        if num_epi_per_seq < 1:
            raise ValueError(f"num_epi_per_seq: expected an int >= 1, got {num_epi_per_seq!r}")
        seq_index = self._epis_index[::num_epi_per_seq]
        if seq_index[-1] != self.num_step:
            seq_index = np.append(seq_index, self.num_step)
        num_seq = len(seq_index) - 1
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(
            group, batch_size, num_seq, "sequences", lambda b: self._num_chunks(num_seq, b)
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
                batch = gather_sequences(columns, starts[mine], lengths[mine], time_steps)
                yield self._shared(group, batch, len(seqs), axis=1)

    def _seq_length(self, seq_length: int | None) -> int:
        if seq_length is None:
            return int(np.diff(self._epis_index).max()) if self.num_epi else 1
        return _replay.check_count("seq_length", seq_length, "an int >= 1 or None")

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
            L; default the longest stored episode (whole episodes).
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
        epoch = check_epoch(epoch)
        seq_length = self._seq_length(seq_length)
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(
            group, batch_size, self.num_step, "steps", lambda b: epoch, "draw"
        )
        cand = _replay.window_starts(self._epis_index, seq_length)
        cand = torch.as_tensor(cand, device=self.device)
        for _ in range(count):
            drawn = group.same(
                lambda: self._randint(len(cand), batch_size), (batch_size,), torch.int64
            )
            starts = cand[group.share(drawn.to(self.device))]
            batch = self._shared(group, self._windows(starts, seq_length), batch_size, axis=1)
            yield (batch, starts) if return_indices else batch
