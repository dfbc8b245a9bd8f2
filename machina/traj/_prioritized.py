"""The prioritised-replay job of ``Traj``: batches of steps or windows drawn by priority
(Schaul et al., 2016), through the samplers of ``_samplers`` cached per column."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch

from machina.traj import _ddp, _replay, _samplers
from machina.traj._batching import check_epoch
from machina.utils.tensors import to_numpy


class _CachedSampler:
    """A replay sampler and what it was built from: column ``key``'s tensor and its version
    (in-place writes bump it), the episode index, and the window starts it draws among."""

    def __init__(
        self, sampler, column: torch.Tensor, index: np.ndarray, cand, evicted: int = 0
    ) -> None:
        self.sampler = sampler
        self.column = column
        self.version = column._version
        self.index = index
        self.cand = cand
        self.evicted = evicted  # the Traj's FIFO evictions so far, when it was built

    def current(self, column: torch.Tensor, index: np.ndarray) -> bool:
        """Whether ``column`` over the episodes of ``index`` changed only through the
        sampler's ``update`` since it was built."""
        return column is self.column and column._version == self.version and index is self.index

    def fresh(self, column: torch.Tensor, index: np.ndarray) -> bool:
        """Whether the sampler still describes ``column`` over the episodes of ``index``."""
        return self.current(column, index) and not self.sampler.stale

    def __getstate__(self) -> dict:
        # A copied or unpickled column restarts its version count, which a stale entry's
        # version could then match: keep whether the entry was current, not the number.
        state = self.__dict__.copy()
        state["version"] = self.column._version == self.version
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.version = self.column._version if state["version"] is True else -1

    def invalidate(self) -> None:
        """Never current again: rebuilt (and its column checked) at the next draw. For a
        write that keeps the column's version (numpy's) and that the sampler did not follow."""
        self.version = -1


def _moved_out(entry: _CachedSampler, cand: np.ndarray | None, evicted: int) -> int | None:
    """How many of ``entry``'s items were evicted since it was built, if the FIFO did no
    more than evict and append: steps, or window starts (``cand``, sorted) before the first
    step still stored; None when the rest of its windows do not start where they did."""
    drop = evicted - entry.evicted
    if drop < 0:
        return None
    if entry.cand is None or cand is None:
        return drop if entry.cand is None and cand is None else None
    shift = int(np.searchsorted(entry.cand, drop))
    kept = entry.cand[shift:]
    if len(kept) > len(cand) or not np.array_equal(cand[: len(kept)], kept - drop):
        return None
    return shift


class PrioritizedReplay:
    """Prioritised batches, ``pri_beta`` annealing, and priority writes that keep the samplers
    in step.

    Expects ``data_map``, ``_epis_index``, ``device``, ``ddp``, ``pri_beta``, ``_samplers``,
    and the batching and storage jobs' ``_plan``, ``_batch``, ``_windows``, ``_seq_length``
    and ``writable_column``.
    """

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
        column = self.data_map[key]
        if not column.is_floating_point():  # update_pris would truncate priorities into it
            raise ValueError(
                f"{key}: expected a floating-point priority column, got {column.dtype}; set "
                f"it with {added_by}"
            )
        return column

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
        epoch = check_epoch(epoch)
        _replay.check_mode(mode)
        _replay.check_pri_args(alpha, init_beta, beta_step)
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(
            group, batch_size, self.num_step, "steps", lambda b: epoch, "draw"
        )
        for _ in range(count):
            indices, is_weights = self._prioritized_draw(
                group, "pris", None, "ef.set_all_pris or ef.compute_pris",
                "ef.set_all_pris or traj_functional.update_pris",
                mode, alpha, batch_size, init_beta, beta_step,
            )  # fmt: skip
            batch = self._shared(group, self._batch(indices), batch_size)
            batch["is_weights"] = is_weights
            yield (batch, indices) if return_indices else batch

    def _prioritized_draw(
        self,
        group: _ddp.Group,
        key: str,
        seq_length: int | None,
        added_by: str,
        fix_hint: str,
        mode: str,
        alpha: float,
        batch_size: int,
        init_beta: float,
        beta_step: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps (window starts with ``seq_length``) drawn by ``key`` (B,), and their
        importance weights (B,).

        Anneals ``pri_beta``. With ``Traj(ddp=True)``, rank 0 draws (from its priorities)
        and every rank keeps its share of both.
        """
        beta = float(init_beta) if self.pri_beta is None else self.pri_beta + float(beta_step)
        beta = min(1.0, beta)

        def draw() -> tuple[np.ndarray, np.ndarray]:
            entry = self._replay_sampler(key, seq_length, added_by, fix_hint, mode, alpha)
            positions, is_weights = entry.sampler.draw(batch_size, beta, self._rng.generator())
            return (positions if entry.cand is None else entry.cand[positions]), is_weights

        if not group.split:
            drawn, is_weights = draw()
            self.pri_beta = beta
            drawn, is_weights = torch.from_numpy(drawn), torch.from_numpy(is_weights)
            if self.device.type == "cpu":  # no torch call: each costs several us here
                return drawn, is_weights
            return drawn.to(self.device), is_weights.to(self.device)

        def make() -> torch.Tensor:
            return torch.from_numpy(np.stack(draw()).astype(np.float64))

        packed = group.same(make, (2, batch_size), torch.float64).to(self.device)
        self.pri_beta = beta
        packed = group.share(packed.T)
        return packed[:, 0].to(torch.int64), packed[:, 1].to(torch.float32)

    def _replay_sampler(
        self,
        key: str,
        seq_length: int | None,
        added_by: str,
        fix_hint: str,
        mode: str,
        alpha: float,
    ) -> _CachedSampler:
        """The sampler over column ``key`` (at the window starts of ``seq_length``), built on
        first use and rebuilt when the column or the episodes changed other than through
        ``_set_priorities`` (or, rank-based, when its order is due; see ``_samplers``)."""
        column = self._pris(key, added_by)
        cache_key = (key, seq_length, mode, float(alpha))
        entry = self._samplers.get(cache_key)
        if entry is not None and entry.fresh(column, self._epis_index):
            return entry
        entry = self._rebuilt(entry, column, key, seq_length, fix_hint, mode, alpha)
        self._samplers[cache_key] = entry
        return entry

    def _rebuilt(
        self,
        entry: _CachedSampler | None,
        column: torch.Tensor,
        key: str,
        seq_length: int | None,
        fix_hint: str,
        mode: str,
        alpha: float,
    ) -> _CachedSampler:
        """The sampler over ``column`` that replaces ``entry`` (None: the first), reusing
        its rank order where it may. No random numbers: the same build whenever it is made."""
        evicted = getattr(self, "_evicted", 0)
        previous, shift = None, None
        if entry is not None and entry.sampler.stale and entry.current(column, self._epis_index):
            previous = entry.sampler  # a rank order due: rebuilt from the last one
        cand = None
        values = column
        if seq_length is not None:
            cand = _replay.window_starts(self._epis_index, seq_length)
            values = column.cpu()[torch.from_numpy(cand)]
            _replay.check_no_other_windows(column, cand, key, seq_length, fix_hint)
        if previous is None and entry is not None and mode == "rank_based":
            # episodes added (the oldest evicted): the last order is reused for the items
            # still stored if their priorities are unchanged (checked by the sampler)
            shift = _moved_out(entry, cand, evicted)
            previous = None if shift is None else entry.sampler  # else: no trusted reuse
        # the one O(N) check, when building; updates are checked as they come
        _replay.check_pris(values, key, fix_hint)
        return _CachedSampler(
            _samplers.make_sampler(values, mode, alpha, previous, shift),
            column,
            self._epis_index,
            cand,
            evicted,
        )

    def _rank_sampler_states(self) -> dict[str, np.ndarray]:
        """The state of every rank-based sampler that describes the stored priorities, as
        archive members ``rank:<key>:<seq_length or 0>:<alpha>:<field>`` (``Traj.save``):
        its order is rebuilt lazily, so it is not a function of the priorities alone."""
        members = {}
        for (key, seq_length, mode, alpha), entry in self._samplers.items():
            column = self.data_map.get(key)
            if mode != "rank_based" or column is None:
                continue
            if not entry.current(column, self._epis_index):
                # The next draw rebuilds it, reusing its order (ties: new steps enter at the
                # highest priority; FIFO shifts): save that build, or a load would sort anew
                # and order the ties otherwise. Not kept here: the draw makes the same one.
                try:
                    column = self._pris(key, "ef.set_all_pris")
                    entry = self._rebuilt(entry, column, key, seq_length, key, mode, alpha)
                except ValueError:  # priorities a draw refuses: that draw will say so
                    continue
            for field, value in entry.sampler.state().items():
                members[f"rank:{key}:{seq_length or 0}:{alpha!r}:{field}"] = value
        return members

    def _restore_rank_samplers(self, states: dict[tuple[str, int, float], dict]) -> None:
        """Rank-based samplers from ``Traj.save``'s states, keyed by (key, seq_length or 0,
        alpha), their shapes and order checked by ``_files``."""
        for (key, seq_length, alpha), state in states.items():
            column = self.data_map[key]
            cand = None if not seq_length else _replay.window_starts(self._epis_index, seq_length)
            values = column if cand is None else column.cpu()[torch.from_numpy(cand)]
            sampler = _samplers.RankSampler.from_state(state, alpha, values)
            evicted = getattr(self, "_evicted", 0)
            entry = _CachedSampler(sampler, column, self._epis_index, cand, evicted)
            self._samplers[(key, seq_length or None, "rank_based", alpha)] = entry

    def _follow_copied_columns(self, old_columns: dict, old_index: np.ndarray) -> None:
        """After ``writable_column`` copied the columns into this Traj's own buffers (the same
        values): each sampler that described an old column describes its copy. Copied, as a
        shallow copy of this Traj may share it (``__copy__``), and updates write it in place."""
        for cache_key, entry in list(self._samplers.items()):
            old = old_columns.get(cache_key[0])
            if old is None or not entry.current(old, old_index):
                continue
            column = self.data_map[cache_key[0]]
            sampler = copy.deepcopy(entry.sampler)
            self._samplers[cache_key] = _CachedSampler(
                sampler, column, self._epis_index, entry.cand, entry.evicted
            )

    def _set_priorities(
        self,
        key: str,
        indices: torch.Tensor,
        values: torch.Tensor | np.ndarray,
        checked: bool = False,
    ) -> None:
        """``data_map[key][indices] = values`` in place, and the same in the samplers over it.

        The one way ``traj_functional.update_pris`` writes priorities: O(B log N) instead of
        the O(N) rebuild that any other write to the column leads to. ``checked``: the
        caller found every one of ``values`` (float32) finite and positive, which they stay
        once written into a float32 or float64 column (a float16 one may round them to 0 or
        inf: those are checked as written).
        """
        old_columns, old_index = dict(self.data_map), self._epis_index
        column = self.writable_column(key)
        if column is not old_columns[key]:
            self._follow_copied_columns(old_columns, old_index)
        entries = [
            e
            for k, e in self._samplers.items()
            if k[0] == key and e.current(column, self._epis_index)  # a due rank order too
        ]
        if (
            column.device.type == "cpu"
            and column.dtype in _replay.NUMPY_FLOATS
            and not column.requires_grad
        ):
            # numpy's indexing on the same memory: a fraction of torch's per-call cost here.
            # The write does not bump column._version; the entries are set to it below.
            steps = indices.numpy() if indices.device.type == "cpu" else indices.cpu().numpy()
            array = column.numpy()
            array[steps] = to_numpy(values, bfloat16_as_float32=True)
            if not entries:
                return
            written = array[steps].astype(np.float64)  # a repeated index: the value that stayed
        else:
            indices = indices.to(column.device)
            values = torch.as_tensor(values)
            column[indices] = values.to(device=column.device, dtype=column.dtype)
            if not entries:
                return
            steps = indices.cpu().numpy()
            written = column.take(indices).cpu().to(torch.float64).numpy()  # bfloat16 too
        checked = checked and column.dtype in (torch.float32, torch.float64)
        # NaN fails the check
        if not checked and len(written) and not (written.min() > 0.0 and written.max() < np.inf):
            for entry in entries:  # the check raises at the rebuild
                entry.invalidate()
            return
        for entry in entries:
            positions, weights = steps, written
            if entry.cand is not None:
                positions = np.searchsorted(entry.cand, steps)
                np.minimum(positions, len(entry.cand) - 1, out=positions)
                real = entry.cand[positions] == steps
                positions, weights = positions[real], weights[real]
            entry.sampler.update(positions, weights)
            entry.version = column._version

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
        epoch = check_epoch(epoch)
        _replay.check_mode(mode)
        _replay.check_pri_args(alpha, init_beta, beta_step)
        seq_length = self._seq_length(seq_length)
        group = _ddp.Group(self.ddp)
        batch_size, count = self._plan(
            group, batch_size, self.num_step, "steps", lambda b: epoch, "draw"
        )
        added_by = f"ef.compute_seq_pris(traj, {seq_length})"
        for _ in range(count):
            starts, is_weights = self._prioritized_draw(
                group, "seq_pris", seq_length, added_by, f"{added_by} (the same seq_length)",
                mode, alpha, batch_size, init_beta, beta_step,
            )  # fmt: skip
            batch = self._shared(group, self._windows(starts, seq_length), batch_size, axis=1)
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
