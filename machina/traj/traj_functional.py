"""Functions on a whole registered ``Traj`` (the replay memory), not on pending episodes."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from machina.traj import _normalize, _replay
from machina.traj._sync import sync
from machina.traj.traj import Traj

__all__ = ["normalize_obs_and_acs", "sync", "update_pris"]


def update_pris(
    traj: Traj,
    td_loss: torch.Tensor,
    indices: torch.Tensor,
    alpha: float = 0.6,
    epsilon: float = 1e-6,
    update_epi_pris: bool = False,
    seq_length: int | None = None,
    eta: float = 0.9,
) -> Traj:
    """Set ``pris[indices] = (|td_loss| + epsilon) ** alpha`` in place; returns ``traj``.

    Parameters
    ----------
    traj : Traj
        Replay memory with a ``pris`` column (``ef.set_all_pris`` / ``ef.compute_pris``).
    td_loss : torch.Tensor
        TD errors of the drawn steps, any shape; only their magnitude matters.
    indices : torch.Tensor or sequence of int
        Flat step indices, the shape of ``td_loss`` (``prioritized_random_batch`` returns
        them; for a sequence batch, ``starts + t`` at its real steps), or a bool mask over
        the steps with one ``td_loss`` value per selected step. A repeated index keeps one
        of its values.
    alpha, epsilon : float
        Priority exponent, and the floor that keeps every step drawable.
    update_epi_pris : bool
        Also recompute ``seq_pris`` of every window holding an updated step (sequence
        replay; needs ``seq_length`` and a ``seq_pris`` column from ``ef.compute_seq_pris``).
    seq_length : int, optional
        Window length of ``seq_pris``.
    eta : float
        Weight of the maximum in a window's priority (see ``ef.compute_seq_pris``).
    """
    if not isinstance(traj, Traj):
        raise TypeError(f"traj: expected a Traj, got {type(traj).__name__}")
    _replay.check_epsilon(epsilon)
    _replay.check_alpha(alpha)
    if "pris" not in traj.data_map:
        raise KeyError("pris: the Traj has no 'pris' column; add it with ef.set_all_pris")
    if not traj.data_map["pris"].is_floating_point():  # a write would truncate into it
        raise ValueError(
            f"pris: expected a floating-point column, got {traj.data_map['pris'].dtype}; set "
            "it with ef.set_all_pris"
        )
    # every check before the first write: a failed call leaves the priorities as they were
    if update_epi_pris:
        if seq_length is None:
            raise ValueError("seq_length: update_epi_pris=True needs the window length, got None")
        traj._seq_length(seq_length)  # the windows' own check
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta: expected a float in [0, 1], got {eta!r}")
        if "seq_pris" not in traj.data_map:
            raise KeyError("seq_pris: the Traj has no 'seq_pris'; add it with ef.compute_seq_pris")
    pris = traj.data_map["pris"]
    # few torch calls: between gradient steps each costs several us (see _priorities)
    if not isinstance(td_loss, torch.Tensor):
        td_loss = torch.as_tensor(td_loss)
    elif td_loss.requires_grad:
        td_loss = td_loss.detach()
    indices = _flat_indices(indices, pris.device, traj.num_step)
    if td_loss.numel() != indices.numel():
        raise ValueError(
            f"td_loss: expected one value per index ({indices.numel()}), got shape "
            f"{tuple(td_loss.shape)}"
        )
    _check_steps(indices, traj.num_step)
    new = _priorities(td_loss, pris.device, alpha, epsilon)
    if len(new):  # written, a NaN, inf or 0 would make every later draw fail
        low, high = _low_high(new)  # NaN reaches both
        if not high < math.inf:
            raise ValueError(
                "td_loss: expected finite TD errors (priorities (|td| + epsilon) ** alpha), "
                "got NaN or inf; no priority was written"
            )
        if not low > 0.0:
            raise ValueError(
                f"epsilon, alpha: priorities (|td| + epsilon) ** alpha underflow to 0 in float32 "
                f"with epsilon={epsilon!r}, alpha={alpha!r}; raise epsilon (or lower alpha); no "
                "priority was written"
            )
    windows = _touched_windows(traj, indices, seq_length) if update_epi_pris else None
    # through the Traj, so that its replay samplers follow in O(B log N)
    traj._set_priorities("pris", indices, new, checked=True)
    if windows is not None:
        starts, ends = windows
        values = _replay.window_pris(traj.data_map["pris"], starts, ends, seq_length, eta)
        traj._set_priorities("seq_pris", starts, values)
    return traj


def _flat_indices(indices, device: torch.device, num_step: int) -> torch.Tensor:
    """``indices`` as a flat int64 tensor on ``device``, with no torch call when it is one."""
    if not isinstance(indices, torch.Tensor):
        indices = torch.as_tensor(indices)
    if indices.device != device:
        indices = indices.to(device)
    if indices.dtype == torch.bool:  # a mask over the Traj's steps, as iterate takes
        if indices.numel() != num_step:  # e.g. a mask over a batch: other steps would change
            raise ValueError(
                f"indices: a bool mask must cover the Traj's {num_step} steps, given "
                f"{indices.numel()} values"
            )
        return indices.reshape(-1).nonzero().reshape(-1)
    if indices.is_floating_point() or indices.is_complex():
        # .long() would truncate (1.9 -> step 1) without a word
        raise ValueError(
            f"indices: expected integer flat step indices or a bool mask, given {indices.dtype}"
        )
    if indices.dim() != 1:
        indices = indices.reshape(-1)
    return indices if indices.dtype == torch.int64 else indices.long()


def _low_high(values: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """The least and the greatest of ``values`` (B,), B > 0; numpy's reductions called
    directly for an array (its ``min`` method's wrapper costs as much again here)."""
    if isinstance(values, np.ndarray):
        return float(np.minimum.reduce(values)), float(np.maximum.reduce(values))
    low, high = torch.aminmax(values)
    return float(low), float(high)


def _check_steps(indices: torch.Tensor, num_step: int) -> None:
    """Raise a ValueError unless every one of ``indices`` (B,) int64 is in ``[0, num_step)``."""
    if not indices.numel():
        return
    if indices.device.type == "cpu":
        # one numpy reduction on the same memory: a negative index is huge as uint64
        if int(np.maximum.reduce(indices.numpy().view(np.uint64))) < num_step:
            return
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= num_step:
        raise ValueError(
            f"indices: expected flat step indices in [0, {num_step}), got [{low}, {high}]"
        )


def _priorities(
    td_loss: torch.Tensor, device: torch.device, alpha: float, epsilon: float
) -> torch.Tensor | np.ndarray:
    """``(|td_loss| + epsilon) ** alpha`` (B,) float32 from ``td_loss`` of any shape, on a new
    array: numpy's for a CPU memory and loss (between gradient steps, with their code out of
    the caches, a numpy call costs a fraction of a torch call; example/benchmarks/README.md)."""
    if (
        device.type == "cpu"
        and td_loss.device.type == "cpu"
        and td_loss.dtype in _replay.NUMPY_FLOATS
    ):
        new = np.abs(td_loss.numpy().reshape(-1)).astype(np.float32, copy=False)
        new += np.float32(epsilon)
        return np.power(new, np.float32(alpha), out=new)
    new = td_loss.reshape(-1).abs()
    if new.dtype != torch.float32:
        new = new.to(torch.float32)
    return new.add_(epsilon).pow_(alpha)


def _touched_windows(
    traj: Traj, indices: torch.Tensor, seq_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The starts of the windows of ``seq_length`` that hold any of ``indices``, and their
    episodes' ends (checked by the caller: a ``seq_pris`` column present).

    A ValueError when ``seq_pris`` is positive at a step of these episodes where no such
    window starts while their last step is 0, as ``ef.compute_seq_pris`` leaves it for
    shorter windows: the update would score those windows over the wrong length.
    """
    # Windows [s, s + L) holding step i start in [i - L + 1, i], and in i's episode: no
    # further back than the longest episode; keep the real window starts.
    lengths = np.diff(traj.epis_index)
    span = min(seq_length, int(lengths.max())) if len(lengths) else 0
    cand = (indices[:, None] - torch.arange(span, device=indices.device)).reshape(-1)
    cand = torch.unique(cand[cand >= 0])
    index = torch.as_tensor(traj.epis_index, device=indices.device)
    epi = torch.searchsorted(index, cand, right=True) - 1
    lengths = index[epi + 1] - index[epi]
    counts = torch.as_tensor(
        _replay.window_counts(lengths.cpu().numpy(), seq_length), device=indices.device
    )
    keep = cand - index[epi] < counts
    stray, seq_pris = cand[~keep], traj.data_map["seq_pris"]
    if len(stray):
        last = index[epi[~keep] + 1] - 1
        wrong = (seq_pris[stray] > 0) & (seq_pris[last] == 0)
        if bool(wrong.any()):
            raise ValueError(
                f"seq_length: seq_pris is positive at step {int(stray[wrong][0])}, where no "
                f"window of seq_length={seq_length} starts: computed for a shorter seq_length? "
                "Pass ef.compute_seq_pris's; no priority was written"
            )
    return cand[keep], index[epi + 1][keep]


def normalize_obs_and_acs(
    traj: Traj,
    mean_obs: Any = None,
    std_obs: Any = None,
    mean_acs: Any = None,
    std_acs: Any = None,
    return_statistic: bool = True,
    eps: float = 1e-6,
) -> Traj | tuple[Traj, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardise the registered ``obs``, ``next_obs`` and ``acs`` columns of ``traj``
    (and ``nstep_next_obs``, when present, with the ``obs`` statistics).

    The statistics and the transform are those of ``ef.normalize_obs_and_acs`` (mean, and
    population standard deviation plus ``eps`` over all stored steps; given statistics used
    as they are), computed with torch on the Traj's device.

    Returns a new Traj: a copy sharing every other column and the pending episodes, which
    are not normalised (use ``ef.normalize_obs_and_acs`` with the returned statistics).
    ``traj`` is untouched; as after ``copy.copy``, neither Traj writes shared rows in place.

    Parameters
    ----------
    traj : Traj
        With registered ``obs`` (N, *ob_shape), ``next_obs`` (N, *ob_shape) and ``acs``
        (N, *ac_shape).
    mean_obs, std_obs, mean_acs, std_acs : array-like, optional
        As in ``ef.normalize_obs_and_acs``: a scalar, ``(dim,)`` or ``(1, dim)``.
    return_statistic : bool
        Also return the statistics used.
    eps : float
        Added to the computed standard deviations, >= 0.

    Returns
    -------
    traj : Traj
        The copy with the normalised columns (floating columns keep their dtype).
    mean_obs, std_obs, mean_acs, std_acs : torch.Tensor
        Only with ``return_statistic``: ``(1, dim)`` float32 on ``traj.device``, accepted
        by ``MPCPol`` (move them to the CPU first from another device).
    """
    if not isinstance(traj, Traj):
        raise TypeError(f"traj: expected a Traj, got {type(traj).__name__}")
    eps = _normalize.check_eps(eps)
    if traj.num_step == 0:
        raise ValueError(
            "normalize_obs_and_acs: traj has no registered steps; call traj.register_epis() "
            "first (or ef.normalize_obs_and_acs on the pending episodes)"
        )
    missing = [k for k in ("obs", "acs", "next_obs") if k not in traj.data_map]
    if missing:
        raise KeyError(
            f"normalize_obs_and_acs: traj has no {missing} column(s); it needs 'obs', 'acs' "
            "and 'next_obs' (ef.add_next_obs before register_epis)"
        )
    given = dict(zip(_normalize.STAT_NAMES, (mean_obs, std_obs, mean_acs, std_acs)))
    with torch.no_grad():
        new_columns, stats = _normalize.normalize_traj_columns(traj.data_map, given, eps)
    # A shallow copy: its data_map is a new dict sharing the columns not replaced here, and
    # both Trajs stop writing their buffers in place, so neither can reach the other's rows.
    new = copy.copy(traj)
    new.data_map = {**new.data_map, **new_columns}
    if return_statistic:
        return (new, *(stats[name] for name in _normalize.STAT_NAMES))
    return new
