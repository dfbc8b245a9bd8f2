"""Standardising observations and actions (``ef.normalize_obs_and_acs`` and
``traj_functional.normalize_obs_and_acs``).

Both compute the same statistics, ``mean`` and ``std + eps`` over all steps (population
standard deviation), each ``(1, *shape)`` float32, and apply exactly the returned values, so
that normalising new data with them later reproduces the same transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from machina.traj._episodes import Columns, episode_function
from machina.traj.traj import Traj
from machina.utils.tensors import to_numpy

NAME = "normalize_obs_and_acs"
STAT_NAMES = ("mean_obs", "std_obs", "mean_acs", "std_acs")
# Which column each statistic is taken over; next_obs is normalised with the obs statistics.
STAT_KEYS = {"mean_obs": "obs", "std_obs": "obs", "mean_acs": "acs", "std_acs": "acs"}
#: observation columns normalised with the obs statistics whenever present (n-step targets
#: of ``ef.compute_nstep`` bootstrap from ``nstep_next_obs``, which must match ``obs``)
OPTIONAL_OBS_KEYS = ("nstep_next_obs",)


def check_eps(eps: float) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        value = np.nan
    if isinstance(eps, bool) or not 0.0 <= value < np.inf:
        raise ValueError(f"eps: expected a finite float >= 0, got {eps!r}")
    return value


def given_statistic(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A user's statistic as a float32 array ``(1, *shape)``, or a ValueError naming it.

    Accepted: a scalar, an array of ``shape`` or of ``(1, *shape)`` (the returned form);
    numpy, torch or nested lists. Standard deviations must be positive, all values finite.
    """
    if torch.is_tensor(value):
        value = to_numpy(value, bfloat16_as_float32=True)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a number or an array of shape (1, {_dims(shape)}), "
            f"got {type(value).__name__}"
        ) from None
    if array.shape not in ((), shape, (1, *shape)):
        raise ValueError(
            f"{name}: expected a scalar or shape (1, {_dims(shape)}) as the "
            f"'{STAT_KEYS[name]}' steps {shape}, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, got {value!r}")
    if name.startswith("std") and not (array > 0.0).all():
        raise ValueError(f"{name}: expected positive standard deviations, got {value!r}")
    return np.broadcast_to(array, (1, *shape)).astype(np.float32)


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def check_computed(name: str, value: np.ndarray) -> None:
    """A computed statistic is finite (a NaN or inf step makes its dimension NaN at every
    step, silently), and a computed ``std + eps`` is not 0 (a constant dimension with
    ``eps = 0`` cannot divide)."""
    bad = np.flatnonzero(~np.isfinite(value.reshape(-1)))
    if len(bad):
        raise ValueError(
            f"{name}: dimensions {bad.tolist()} of '{STAT_KEYS[name]}' hold NaN or inf values "
            f"(their {name.split('_')[0]} is {value.reshape(-1)[bad[0]]}); expected finite data"
        )
    if not name.startswith("std"):
        return
    zero = np.flatnonzero(value.reshape(-1) <= 0.0)
    if len(zero):
        raise ValueError(
            f"{name}: dimensions {zero.tolist()} of '{STAT_KEYS[name]}' are constant and eps "
            "is 0; pass eps > 0 or give the standard deviation"
        )


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """Floating columns keep their precision; integer ones (discrete actions) become float32."""
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = x.astype(np.float64)  # a new array: the input column is never written
    out -= mean
    out /= std
    return out.astype(_float_dtype(x.dtype), copy=False)


def _normalize(
    data: Columns, given: dict[str, Any], eps: float, out: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The new ``obs``, ``next_obs`` and ``acs``; the statistics used go into ``out``.

    ``out`` carries the statistics past ``episode_function``, whose ``fn`` returns columns
    only (a statistic has no per-step first axis).
    """
    columns = {
        "obs": data.require("obs", NAME),
        "acs": data.require("acs", NAME),
        "next_obs": data.require("next_obs", NAME, "ef.add_next_obs(data)"),
    }
    for name in STAT_NAMES:
        x = columns[STAT_KEYS[name]]
        if given[name] is not None:
            out[name] = given_statistic(name, given[name], x.shape[1:])
        elif name.startswith("mean"):
            mean = x.mean(axis=0, dtype=np.float64, keepdims=True)
            check_computed(name, mean)
            out[name] = mean.astype(np.float32)
        else:
            std = x.std(axis=0, dtype=np.float64, keepdims=True) + eps
            check_computed(name, std)
            out[name] = std.astype(np.float32)
    new = {
        "obs": _standardize(columns["obs"], out["mean_obs"], out["std_obs"]),
        "next_obs": _standardize(columns["next_obs"], out["mean_obs"], out["std_obs"]),
        "acs": _standardize(columns["acs"], out["mean_acs"], out["std_acs"]),
    }
    for key in OPTIONAL_OBS_KEYS:
        if key in data:
            new[key] = _standardize(data[key], out["mean_obs"], out["std_obs"])
    return new


# The adapter's errors (no pending episodes, wrong data type) name the public function.
_normalize.__name__ = _normalize.__qualname__ = NAME
normalize_columns = episode_function(_normalize)


def normalize_obs_and_acs(
    data: Traj | list[dict],
    mean_obs: Any = None,
    std_obs: Any = None,
    mean_acs: Any = None,
    std_acs: Any = None,
    return_statistic: bool = True,
    eps: float = 1e-6,
) -> Traj | list[dict] | tuple[Traj | list[dict], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise ``obs``, ``next_obs`` and ``acs`` with statistics over all steps.

    ``obs_n = (obs - mean_obs) / std_obs``, ``next_obs_n = (next_obs - mean_obs) / std_obs``
    and ``acs_n = (acs - mean_acs) / std_acs``; ``nstep_next_obs`` (``compute_nstep``), when
    present, is normalised like ``next_obs``. A statistic that is not given is computed
    over every step of every episode: the mean, and the population standard deviation plus
    ``eps`` (so a constant dimension normalises to 0 instead of dividing by 0). Given ones
    are used as they are, without ``eps``. Returns a new object; the input is untouched and
    the other keys' arrays are shared. Pass the statistics on to ``MPCPol(..., mean_obs,
    std_obs, mean_acs, std_acs)`` with a net trained on the normalised data, or back to this
    function to normalise new episodes the same way.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``obs`` (T, *ob_shape), ``next_obs`` (T, *ob_shape) and ``acs``
        (T, *ac_shape); a Traj's pending episodes (``add_epis``). At least one episode.
    mean_obs, std_obs, mean_acs, std_acs : array-like, optional
        Statistics to use instead of computing them: a scalar, ``(dim,)`` or ``(1, dim)``
        (as returned; ``(1, *ob_shape)`` in general); numpy, torch or lists. Standard
        deviations must be positive. Cast to float32.
    return_statistic : bool
        Also return the statistics used.
    eps : float
        Added to the computed standard deviations, >= 0.

    Returns
    -------
    data : Traj or list of dict
        Of the input's kind, with the normalised ``obs``, ``next_obs`` and ``acs`` (floating
        columns keep their dtype, integer ones become float32).
    mean_obs, std_obs : np.ndarray
        Only with ``return_statistic``: ``(1, *ob_shape)`` float32 each.
    mean_acs, std_acs : np.ndarray
        Only with ``return_statistic``: ``(1, *ac_shape)`` float32 each.
    """
    given = dict(zip(STAT_NAMES, (mean_obs, std_obs, mean_acs, std_acs)))
    stats: dict[str, np.ndarray] = {}
    new = normalize_columns(data, given, check_eps(eps), stats)
    if not stats:  # the adapter returns an empty list without calling _normalize
        raise ValueError(f"{NAME}: data: expected at least one episode, got an empty list")
    if return_statistic:
        return (new, *(stats[name] for name in STAT_NAMES))
    return new


def normalize_traj_columns(
    columns: dict[str, torch.Tensor], given: dict[str, Any], eps: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Torch twin of ``_normalize`` for a registered Traj's columns, on their device.

    Returns the new ``obs``, ``next_obs``, ``acs`` (and ``nstep_next_obs`` when present)
    columns and the statistics ``(1, *shape)`` float32 each.
    """
    stats: dict[str, torch.Tensor] = {}
    for name in STAT_NAMES:
        x = columns[STAT_KEYS[name]]
        if given[name] is not None:
            value = given_statistic(name, given[name], tuple(x.shape[1:]))
            stats[name] = torch.as_tensor(value, device=x.device)
        elif name.startswith("mean"):
            mean = x.to(torch.float64).mean(0, keepdim=True)
            check_computed(name, mean.cpu().numpy())
            stats[name] = mean.to(torch.float32)
        else:
            std = x.to(torch.float64).std(0, correction=0, keepdim=True) + eps
            check_computed(name, std.cpu().numpy())
            stats[name] = std.to(torch.float32)

    def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return ((x.to(torch.float64) - mean) / std).to(dtype)

    new = {
        "obs": standardize(columns["obs"], stats["mean_obs"], stats["std_obs"]),
        "next_obs": standardize(columns["next_obs"], stats["mean_obs"], stats["std_obs"]),
        "acs": standardize(columns["acs"], stats["mean_acs"], stats["std_acs"]),
    }
    for key in OPTIONAL_OBS_KEYS:
        if key in columns:
            new[key] = standardize(columns[key], stats["mean_obs"], stats["std_obs"])
    return new, stats
