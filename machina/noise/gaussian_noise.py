"""Independent Gaussian action noise (as TD3 explores; Fujimoto et al., 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch

from machina.noise._common import per_dim as _per_dim
from machina.noise.base import BaseActionNoise


class GaussianActionNoise(BaseActionNoise):
    """``N(mu, std^2)`` drawn independently for every action and every call.

    Parameters
    ----------
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)``; the noise is in the policy's action space (see
        :class:`BaseActionNoise`).
    std : float or sequence of float
        Standard deviation, one for all dims or one per dim.
    mu : float or sequence of float
        Mean.
    """

    def __init__(
        self,
        action_space: gym.spaces.Box,
        std: float | Sequence[float] = 0.1,
        mu: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__(action_space)
        self.std = _per_dim("std", std, self.ac_dim, type(self).__name__, nonnegative=True)
        self.mu = _per_dim("mu", mu, self.ac_dim, type(self).__name__)

    def __call__(
        self, batch_shape: Sequence[int] = (), device: str | torch.device | None = None
    ) -> torch.Tensor:
        """Noise of shape ``(*batch_shape, d)``, float32, on ``device``."""
        shape = tuple(batch_shape) + (self.ac_dim,)
        noise = torch.randn(shape, device=device)
        return self.mu.to(noise.device) + self.std.to(noise.device) * noise
