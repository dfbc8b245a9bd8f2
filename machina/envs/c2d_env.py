"""C2DEnv: a continuous-action environment seen through a discrete (binned) action space."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np

from machina.envs._wrapper_api import WrapperAPI


def whole_numbers(given: np.ndarray) -> bool:
    """Whether ``given`` holds integers, or floats that are all whole (finite) numbers: the
    indices a discrete action may come as (2.7 would be truncated to 2 without a word)."""
    if given.dtype.kind in "iub":
        return True
    return given.dtype.kind == "f" and bool(np.all(np.isfinite(given) & (given == np.round(given))))


class C2DEnv(WrapperAPI, gymnasium.ActionWrapper, gymnasium.utils.RecordConstructorArgs):
    """Turn a 1-D ``Box`` action space into ``MultiDiscrete([n_bins] * d)``.

    Bin ``k`` of dimension ``i`` is the real action
    ``low[i] + k * (high[i] - low[i]) / (n_bins - 1)``: ``n_bins`` evenly spaced values
    from ``low[i]`` to ``high[i]``, both ends included.

    Parameters
    ----------
    env : gymnasium.Env
        An environment (a ``GymEnv`` too) whose action space is a bounded ``Box`` of shape (d,).
    n_bins : int
        Number of values per action dimension, at least 2.
    """

    def __init__(self, env: gymnasium.Env, n_bins: int = 30) -> None:
        space = env.action_space
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"env: expected an action space Box of shape (d,), given {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"env: expected finite action bounds, given {space}")
        if int(n_bins) != n_bins or n_bins < 2:
            raise ValueError(f"n_bins: expected an integer >= 2, given {n_bins!r}")
        gymnasium.utils.RecordConstructorArgs.__init__(self, n_bins=n_bins)
        gymnasium.ActionWrapper.__init__(self, env)
        self.n_bins = int(n_bins)
        self.action_space = gymnasium.spaces.MultiDiscrete(
            np.full(space.shape, self.n_bins, dtype=np.int64)
        )
        # bins: (d, n_bins) table of real actions, so mapping is one fancy index.
        bins = np.linspace(space.low, space.high, self.n_bins, axis=-1)
        if np.issubdtype(space.dtype, np.integer):  # to the nearest, not toward 0 (-2.5 -> -2)
            bins = np.rint(bins)
        self.bins = bins.astype(space.dtype)

    def action(self, action: np.ndarray) -> np.ndarray:
        """Map bin indices (d,) int to the real action (d,) of the inner ``Box``.

        A longer flat action keeps its first ``d`` indices, with a warning (machina 0.x
        zipped the action with the bounds and so ignored the rest).
        """
        given = np.asarray(action)
        # a float index would be truncated silently (2.7 -> bin 2): only whole numbers pass
        if not whole_numbers(given):
            raise ValueError(f"action: expected integer bin indices, given {action!r}")
        idx = given.astype(np.int64).reshape(-1)
        dim = self.bins.shape[0]
        if idx.size < dim:
            raise ValueError(f"action: expected {dim} bin indices, given {idx.size}: {action!r}")
        if idx.size > dim:
            warnings.warn(
                f"action: expected {dim} bin indices, got {idx.size}; using the first {dim}",
                stacklevel=2,
            )
            idx = idx[:dim]
        idx = idx.reshape(dim)
        if np.any(idx < 0) or np.any(idx >= self.n_bins):
            raise ValueError(f"action: expected bin indices in [0, {self.n_bins}), given {action}")
        return self.bins[np.arange(self.bins.shape[0]), idx]
