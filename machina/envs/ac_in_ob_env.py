"""AcInObEnv: the previous action appended to the observation (for meta-RL policies)."""

from __future__ import annotations

from typing import Any, SupportsFloat, cast

import gymnasium
import numpy as np

from machina.envs._append_wrapper import _AppendWrapper, _check_dim, _check_flat_box
from machina.envs.c2d_env import whole_numbers


class AcInObEnv(_AppendWrapper):
    """Append the previous action to the observation.

    A policy that sees what it just did (and, with :class:`RewInObEnv`, what it got for it)
    can infer which task it is in: the meta-RL setting of RL^2.

    The appended part is, for a ``Box`` action space, the action clipped to the bounds and,
    with ``normalize``, mapped linearly to [-1, 1]; for ``Discrete`` and ``MultiDiscrete``
    action spaces (e.g. an inner :class:`~machina.envs.C2DEnv`), its one-hot encoding
    (concatenated over the dimensions). After ``reset`` it is ``initial_value`` everywhere.

    Parameters
    ----------
    env : gymnasium.Env
        An environment with a 1-D ``Box`` observation space and a bounded ``Box``,
        ``Discrete`` or ``MultiDiscrete`` action space.
    dim : int
        Axis the action is appended along: 0 (or -1), since observations are 1-D.
    normalize : bool
        Map ``Box`` actions from their bounds to [-1, 1].
    initial_value : float
        The appended part after ``reset``, before any action.

    Notes
    -----
    Compose with :class:`~machina.envs.C2DEnv` either way: ``C2DEnv(AcInObEnv(env))`` appends
    the real (continuous) action, ``AcInObEnv(C2DEnv(env))`` the one-hot bins.
    """

    def __init__(
        self, env: gymnasium.Env, dim: int = 0, normalize: bool = True, initial_value: float = 0
    ) -> None:
        ob_space = _check_flat_box(env, "env")
        ac_space = env.action_space
        spaces = gymnasium.spaces
        if isinstance(ac_space, spaces.Box):
            if len(ac_space.shape) != 1:
                raise ValueError(f"env: expected an action space of shape (d,), given {ac_space}")
            if normalize and not (
                np.all(np.isfinite(ac_space.low)) and np.all(np.isfinite(ac_space.high))
            ):
                raise ValueError(
                    f"env: normalize=True needs finite action bounds, given {ac_space}"
                )
            if normalize:
                low = np.full(ac_space.shape, -1.0)
                high = np.full(ac_space.shape, 1.0)
            else:
                low, high = ac_space.low, ac_space.high
        elif isinstance(ac_space, (spaces.Discrete, spaces.MultiDiscrete)):
            n = (
                int(ac_space.n)
                if isinstance(ac_space, spaces.Discrete)
                else int(ac_space.nvec.sum())
            )
            low, high = np.zeros(n), np.ones(n)
        else:
            raise ValueError(
                f"env: expected a Box, Discrete or MultiDiscrete action space, given {ac_space}"
            )
        # Recorded so that env.spec (and gymnasium's check_env) can describe the stack.
        gymnasium.utils.RecordConstructorArgs.__init__(
            self, dim=dim, normalize=normalize, initial_value=initial_value
        )
        gymnasium.Wrapper.__init__(self, env)
        self.dim = _check_dim(dim)
        self.normalize = bool(normalize)
        self.initial_value = float(initial_value)
        self.ac_dim = low.shape[0]
        low = np.minimum(low, self.initial_value)
        high = np.maximum(high, self.initial_value)
        self.observation_space = spaces.Box(
            np.concatenate([ob_space.low, low]).astype(np.float32),
            np.concatenate([ob_space.high, high]).astype(np.float32),
            dtype=np.float32,
        )

    def encode_action(self, action: Any) -> np.ndarray:
        """The part of the observation that stands for ``action``: (ac_dim,) float32.

        Raises
        ------
        ValueError
            When a ``Discrete`` / ``MultiDiscrete`` action is not in the action space
            (``start`` included).
        """
        space = self.env.action_space
        spaces = gymnasium.spaces
        if isinstance(space, spaces.Box):
            ac = np.clip(
                np.asarray(action, dtype=np.float64).reshape(space.shape), space.low, space.high
            )
            if self.normalize:  # a fixed dimension (low == high) maps to 0, not 0 / 0
                span = space.high.astype(np.float64) - space.low
                fixed = span <= 0
                ac = np.where(fixed, 0.0, (ac - space.low) * 2.0 / np.where(fixed, 1.0, span) - 1.0)
            return ac.astype(np.float32)
        if isinstance(space, spaces.Discrete):
            nvec = np.array([space.n], dtype=np.int64)
            start = np.array([space.start], dtype=np.int64)
        else:
            space = cast(spaces.MultiDiscrete, space)  # the only other space accepted
            nvec = space.nvec.ravel().astype(np.int64)
            start = np.asarray(space.start, dtype=np.int64).ravel()
        given = np.asarray(action)
        # whole numbers as floats too, as C2DEnv takes them
        if given.size != nvec.size or not whole_numbers(given):
            raise ValueError(f"action: expected an element of {space}, given {action!r}")
        # Both spaces may start elsewhere than 0 (``start``): the one-hot index is the offset.
        idx = given.astype(np.int64).reshape(nvec.size) - start
        if np.any(idx < 0) or np.any(idx >= nvec):
            raise ValueError(f"action: expected an element of {space}, given {action!r}")
        onehot = np.zeros(self.ac_dim, dtype=np.float32)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]).astype(np.int64)
        onehot[offsets + idx] = 1.0
        return onehot

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset; the appended part is ``initial_value``.

        Returns
        -------
        obs : (ob_dim + ac_dim,) float32
        info : dict
        """
        obs, info = self.env.reset(seed=seed, options=options)
        return self._append(obs, np.full(self.ac_dim, self.initial_value, np.float32)), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step; the next observation carries ``action``.

        Returns
        -------
        obs : (ob_dim + ac_dim,) float32
        rew, terminated, truncated, info
            As the inner environment's.
        """
        part = self.encode_action(action)  # checked before the environment moves
        obs, rew, term, trunc, info = self.env.step(action)
        return self._append(obs, part), rew, term, trunc, info
