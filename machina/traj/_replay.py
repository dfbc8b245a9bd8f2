"""Index arithmetic of a Traj used as a replay memory: argument checks, rank weights,
windows and their priorities. The draws themselves are in ``_samplers``.

Everything here works on whole arrays of indices and priorities, never a Python loop per
sample.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

#: sampling modes of ``Traj.prioritized_random_batch`` (Schaul et al., 2016, section 3.3)
MODES = ("proportional", "rank_based")
#: float dtypes numpy holds, so that priorities and losses of a CPU memory are computed and
#: written with numpy (a numpy call costs a fraction of a torch call between gradient steps)
NUMPY_FLOATS = (torch.float32, torch.float64, torch.float16)
_INF = float("inf")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    return mode


def check_pri_args(alpha: float, init_beta: float, beta_step: float) -> None:
    """A ValueError naming the argument unless ``alpha >= 0``, ``init_beta`` in [0, 1] and
    ``beta_step >= 0`` (NaN fails every check)."""
    try:  # the usual call, valid floats, checked at a fraction of the loop's cost
        if (
            0.0 <= alpha < _INF
            and 0.0 <= init_beta <= 1.0
            and 0.0 <= beta_step < _INF
            and bool not in (type(alpha), type(init_beta), type(beta_step))
        ):
            return
    except (TypeError, ValueError, RuntimeError):  # arrays, tensors, strings: below
        pass
    for name, value, ok, expected in (
        ("alpha", alpha, lambda v: v >= 0.0, "a float >= 0"),
        ("init_beta", init_beta, lambda v: 0.0 <= v <= 1.0, "a float in [0, 1]"),
        ("beta_step", beta_step, lambda v: v >= 0.0, "a float >= 0"),
    ):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not (ok(number) and number < float("inf")):
            raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_count(name: str, value: int, expected: str = "an int >= 1") -> int:
    """``value`` as an int >= 1 (numpy's integers too), or a ValueError naming ``name``; a
    bool is refused (True would pass as 1)."""
    if not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1:
        return int(value)
    raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_alpha(alpha: float) -> None:
    """A ValueError naming ``alpha`` unless it is a finite float >= 0 (a priority exponent)."""
    check_pri_args(alpha, 0.0, 0.0)


def check_epsilon(epsilon: float) -> None:
    """A ValueError naming ``epsilon`` unless it is a positive finite float (the floor of
    priorities ``(|td| + epsilon) ** alpha``: NaN or inf would pass as a floor and then
    blame the TD errors)."""
    if type(epsilon) is float and 0.0 < epsilon < math.inf:  # the usual call, per step
        return
    if isinstance(epsilon, torch.Tensor) and epsilon.numel() == 1:
        epsilon = float(epsilon)
    if isinstance(epsilon, bool) or not (
        isinstance(epsilon, numbers.Real) and 0.0 < epsilon < math.inf
    ):
        raise ValueError(f"epsilon: expected a positive finite float, got {epsilon!r}")


def sampling_weights(pris: torch.Tensor, mode: str, alpha: float) -> torch.Tensor:
    """Unnormalised sampling weights, float64 (N,).

    ``proportional``: the priorities themselves (already ``(|td| + eps) ** alpha``, as
    ``update_pris`` stores them). ``rank_based``: ``rank ** -alpha`` with rank 1 for the
    highest priority; equal priorities share the average of their ranks, so that ties (every
    new episode enters at the maximum) are drawn alike, not by storage order. The samplers
    of ``_samplers`` draw by exactly these weights; this direct form is their reference.
    """
    pris = pris.to(torch.float64)
    if mode == "proportional":
        return pris
    values, order = torch.sort(pris, descending=True)
    _, counts = torch.unique_consecutive(values, return_counts=True)
    # a group of c ties occupying positions [p, p + c) (1-based ranks p + 1 .. p + c)
    # averages to p + (c + 1) / 2
    first = torch.cumsum(counts, 0) - counts
    group_rank = first.to(torch.float64) + (counts.to(torch.float64) + 1.0) / 2.0
    ranks = torch.empty_like(pris)
    ranks[order] = torch.repeat_interleave(group_rank, counts)
    return ranks.pow(-alpha)


def check_pris(pris: torch.Tensor, key: str, added_by: str) -> None:
    """A ValueError naming ``key`` unless every priority is finite and positive."""
    if len(pris) == 0:
        return
    # one pass: NaN propagates into both ends, an inf into one (20x isfinite().all() at 1M)
    low, high = (float(v) for v in torch.aminmax(pris))
    if not (low > 0.0 and math.isfinite(high)):
        raise ValueError(
            f"{key}: expected finite positive priorities, got min {low} (and "
            f"{int((~torch.isfinite(pris)).sum())} non-finite); set them with {added_by}"
        )


def check_no_other_windows(
    pris: torch.Tensor, starts: np.ndarray, key: str, seq_length: int, added_by: str
) -> None:
    """A ValueError when ``pris`` (T,) looks computed for shorter windows: it has zeros
    (``ef.compute_seq_pris`` leaves them where none of its windows starts) and is positive
    where no window of ``seq_length`` starts. Drawing the starts of longer windows by it
    would weigh each window by another window's priority. Priorities of the user's own,
    positive at every step, pass."""
    if not bool((pris == 0).any()):
        return
    outside = pris.detach().cpu().clone()
    outside[torch.from_numpy(starts)] = 0
    if bool(outside.any()):
        step = int(torch.nonzero(outside)[0])
        raise ValueError(
            f"{key}: a priority at step {step}, where no window of seq_length={seq_length} "
            f"starts: computed for another (shorter) seq_length? Set them with {added_by}"
        )


def window_counts(lengths: np.ndarray, seq_length: int) -> np.ndarray:
    """Windows per episode: full windows of ``seq_length`` steps, or one for a short episode.

    Windows start only at steps ``[0, T - L]``, never padded past the episode's end, so an
    episode's last ``L - 1`` steps (and its first) lie in fewer windows than its middle ones
    (see ``Traj.random_batch_rnn``). ``ef.compute_seq_pris`` and ``traj_functional.update_pris``
    score exactly this window set.
    """
    return np.maximum(lengths - seq_length, 0) + 1


def window_starts(epis_index: np.ndarray, seq_length: int) -> np.ndarray:
    """Flat index of every window start, (W,) int64, episode by episode."""
    starts = epis_index[:-1]
    counts = window_counts(np.diff(epis_index), seq_length)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))


def window_pris(
    pris: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, seq_length: int, eta: float
) -> torch.Tensor:
    """``eta * max + (1 - eta) * mean`` of ``|pris|`` over ``[start, min(start + L, end))``.

    R2D2's sequence priority (Kapturowski et al., 2019, section 2.3). ``starts`` and ``ends``
    (the end of each window's episode) are (S,); returns (S,) float32.
    """
    # no wider than the longest window: a seq_length far above every episode's length
    # would build a (S, seq_length) matrix of mostly invalid steps
    width = min(seq_length, int((ends - starts).max())) if len(starts) else 1
    t = torch.arange(width, device=pris.device)
    idx = starts[:, None] + t[None, :]
    valid = idx < ends[:, None]
    values = pris.abs().to(torch.float32)[torch.where(valid, idx, starts[:, None])]
    count = valid.sum(dim=1).to(torch.float32)
    peak = torch.where(valid, values, torch.zeros((), dtype=values.dtype)).amax(dim=1)
    mean = torch.where(valid, values, torch.zeros((), dtype=values.dtype)).sum(dim=1) / count
    return eta * peak + (1.0 - eta) * mean
