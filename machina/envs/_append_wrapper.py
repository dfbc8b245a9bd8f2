"""What AcInObEnv and RewInObEnv share: a 1-D observation with something appended to it."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from machina.envs._wrapper_api import WrapperAPI


def _check_flat_box(env: gymnasium.Env, name: str) -> gymnasium.spaces.Box:
    space = env.observation_space
    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{name}: expected an observation space Box of shape (d,), given {space}")
    return space


def _check_dim(dim: int) -> int:
    # Observations are flat: the only axis to append along is the first (0 or -1).
    if dim not in (0, -1):
        raise ValueError(f"dim: expected 0 or -1 (observations are 1-D), given {dim!r}")
    return dim


class _AppendWrapper(WrapperAPI, gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Base of the wrappers that append a part to a 1-D observation along ``self.dim``.

    Subclasses set ``self.dim`` (checked with ``_check_dim``) and their observation space.
    """

    dim: int

    def _append(self, obs: Any, part: np.ndarray | float) -> np.ndarray:
        """``obs`` (ob_dim,) followed by ``part`` (k,): (ob_dim + k,) float32."""
        part = np.asarray(part, dtype=np.float32).reshape(-1)
        return np.concatenate([np.asarray(obs, dtype=np.float32), part], axis=self.dim)
