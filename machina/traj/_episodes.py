"""The one place where estimators accept either a Traj or a list of episodes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from machina.traj.traj import Traj

Epi = dict


def episode_function(fn: Callable[..., list[Epi]]) -> Callable:
    """Let ``fn(epis, ...) -> new_epis`` also take a Traj (its pending episodes).

    A Traj argument gives back a new Traj whose pending episodes are the result; the input
    Traj is left untouched.
    """

    @functools.wraps(fn)
    def wrapper(data, *args, **kwargs):
        if isinstance(data, Traj):
            if not data.current_epis:
                raise ValueError(
                    f"{fn.__name__}: the Traj has no pending episodes; call traj.add_epis(epis) "
                    "before the estimators and traj.register_epis() after them"
                )
            return data.with_current_epis(fn(data.current_epis, *args, **kwargs))
        if isinstance(data, dict) or not isinstance(data, Sequence):
            raise TypeError(
                f"{fn.__name__}: data: expected a Traj or a list of episode dicts, "
                f"got {type(data).__name__}"
            )
        return fn(list(data), *args, **kwargs)

    return wrapper


def require(epis: Sequence[Epi], key: str, fn_name: str, added_by: str | None = None) -> None:
    """Raise a KeyError naming the estimator that adds ``key`` when an episode lacks it."""
    for i, epi in enumerate(epis):
        if key not in epi:
            hint = f"; call {added_by} first" if added_by else ""
            raise KeyError(f"{fn_name}: epis[{i}] has no '{key}'{hint}")


def lengths_of(epis: Sequence[Epi]) -> np.ndarray:
    """Episode lengths, shape (n_epi,)."""
    return np.fromiter((len(epi["rews"]) for epi in epis), dtype=np.int64, count=len(epis))


def concat(epis: Sequence[Epi], key: str, lengths: np.ndarray) -> np.ndarray:
    """One key of every episode concatenated, with each episode's first axis checked."""
    parts = [np.asarray(epi[key]) for epi in epis]
    for i, (part, length) in enumerate(zip(parts, lengths)):
        if length == 0:
            raise ValueError(f"epis[{i}]: episodes must have at least one step, got 0")
        if part.shape[:1] != (length,):
            raise ValueError(
                f"epis[{i}]['{key}']: expected a first axis of length {length} "
                f"(that of 'rews'), got shape {part.shape}"
            )
    return np.concatenate(parts)


def split_into(epis: Sequence[Epi], lengths: np.ndarray, **columns: np.ndarray) -> list[Epi]:
    """New episode dicts: each old one (arrays shared, not copied) plus its slice of columns."""
    bounds = np.cumsum(lengths)[:-1]
    pieces = {k: np.split(v, bounds) for k, v in columns.items()}
    return [{**epi, **{k: pieces[k][i] for k in columns}} for i, epi in enumerate(epis)]


def last_steps(lengths: np.ndarray) -> np.ndarray:
    """Flat index of each episode's last step, shape (n_epi,)."""
    return np.cumsum(lengths) - 1
