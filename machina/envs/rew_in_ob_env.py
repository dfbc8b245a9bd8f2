"""RewInObEnv: the previous reward appended to the observation (for meta-RL policies)."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium
import numpy as np

from machina.envs._append_wrapper import _AppendWrapper, _check_dim, _check_flat_box


class RewInObEnv(_AppendWrapper):
    """Append the previous reward to the observation.

    The appended value is ``(rew - mean) / std`` with ``normalize``, the raw reward
    otherwise; after ``reset`` it is ``initial_value``. Rewards are unchanged.

    Parameters
    ----------
    env : gymnasium.Env
        An environment with a 1-D ``Box`` observation space.
    dim : int
        Axis the reward is appended along: 0 (or -1), since observations are 1-D.
    normalize : bool
        Standardise the appended reward with ``mean`` and ``std``.
    initial_value : float
        The appended value after ``reset``, before any reward.
    mean, std : float
        Used with ``normalize``; ``std`` must be positive.
    low, high : float
        Bounds of the appended value in the observation space; the appended value is
        clipped to them (the reward itself is not).
    """

    def __init__(
        self,
        env: gymnasium.Env,
        dim: int = 0,
        normalize: bool = True,
        initial_value: float = 0,
        mean: float = 0,
        std: float = 1,
        low: float = -np.inf,
        high: float = np.inf,
    ) -> None:
        ob_space = _check_flat_box(env, "env")
        if not std > 0:
            raise ValueError(f"std: expected a positive number, given {std!r}")
        if not low <= initial_value <= high:
            raise ValueError(
                f"initial_value: expected a value in [low, high] = [{low}, {high}], "
                f"given {initial_value!r}"
            )
        # Recorded so that env.spec (and gymnasium's check_env) can describe the stack.
        gymnasium.utils.RecordConstructorArgs.__init__(
            self,
            dim=dim,
            normalize=normalize,
            initial_value=initial_value,
            mean=mean,
            std=std,
            low=low,
            high=high,
        )
        gymnasium.Wrapper.__init__(self, env)
        self.dim = _check_dim(dim)
        self.normalize = bool(normalize)
        self.initial_value = float(initial_value)
        self.mean = float(mean)
        self.std = float(std)
        self.low = float(low)
        self.high = float(high)
        self.observation_space = gymnasium.spaces.Box(
            np.append(ob_space.low, low).astype(np.float32),
            np.append(ob_space.high, high).astype(np.float32),
            dtype=np.float32,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset; the appended value is ``initial_value``.

        Returns
        -------
        obs : (ob_dim + 1,) float32
        info : dict
        """
        obs, info = self.env.reset(seed=seed, options=options)
        return self._append(obs, self.initial_value), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step; the next observation carries this step's reward.

        Returns
        -------
        obs : (ob_dim + 1,) float32
        rew, terminated, truncated, info
            As the inner environment's (the reward unclipped).
        """
        obs, rew, term, trunc, info = self.env.step(action)
        value = (float(rew) - self.mean) / self.std if self.normalize else float(rew)
        # Kept within [low, high] so that the observation stays in observation_space.
        value = min(max(value, self.low), self.high)
        return self._append(obs, value), rew, term, trunc, info
