"""Ornstein-Uhlenbeck action noise (as DDPG explores; Lillicrap et al., 2016)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch

from machina.noise._common import per_dim as _per_dim
from machina.noise.base import BaseActionNoise


class OUActionNoise(BaseActionNoise):
    """Temporally correlated noise ``x += theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)``.

    Each call advances the process one step and returns the new ``x``. The state holds one
    row per action of the batch, ``(*batch_shape, d)``; it starts at ``x0`` (zeros when None)
    and starts again there after :meth:`reset` (``DeterministicActionNoisePol.reset`` calls
    it) or when a call asks for another ``batch_shape``. Inside ``EpiSampler`` the batch holds
    the environments that are stepping, one row each. So the process runs on across episodes
    and ``sample`` calls (a feed-forward policy is not told when one environment starts a new
    episode), and restarts for every row when the number of stepping environments changes,
    e.g. as environments finish their quota at the end of a ``sample`` call. Call
    ``pol.reset()`` before ``sample`` for a fresh process per call. (With ``num_parallel > 1``
    each worker gets a copy of the policy, and of its noise state, at every ``sample`` call.)

    Parameters
    ----------
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)``; the noise is in the policy's action space (see
        :class:`BaseActionNoise`).
    sigma, theta, dt : float
        Diffusion, mean reversion and time step; sigma and theta are the DDPG paper's
        (Lillicrap et al., 2016, arXiv:1509.02971, section 7). The
        stationary standard deviation is about ``sigma / sqrt(2 * theta)`` (0.37).
    x0 : float or sequence of float, optional
        Initial state.
    mu : float or sequence of float
        Long-run mean.
    """

    def __init__(
        self,
        action_space: gym.spaces.Box,
        sigma: float | Sequence[float] = 0.2,
        theta: float = 0.15,
        dt: float = 1e-2,
        x0: float | Sequence[float] | None = None,
        mu: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__(action_space)
        owner = type(self).__name__
        self.sigma = _per_dim("sigma", sigma, self.ac_dim, owner, nonnegative=True)
        self.mu = _per_dim("mu", mu, self.ac_dim, owner)
        self.x0 = None if x0 is None else _per_dim("x0", x0, self.ac_dim, owner)
        if not (theta >= 0 and math.isfinite(theta)):
            raise ValueError(f"theta: {owner} needs a finite float >= 0, got {theta!r}")
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt: {owner} needs a finite float > 0, got {dt!r}")
        self.theta = float(theta)
        self.dt = float(dt)
        self.x_prev: torch.Tensor | None = None

    def __call__(
        self, batch_shape: Sequence[int] = (), device: str | torch.device | None = None
    ) -> torch.Tensor:
        """Advance the process one step: noise of shape ``(*batch_shape, d)``, float32.

        ``noise(device)`` with a device alone (machina 0.x's call) gives shape ``(d,)``.
        """
        if isinstance(batch_shape, str | torch.device):
            batch_shape, device = (), batch_shape
        shape = tuple(batch_shape) + (self.ac_dim,)
        device = None if device is None else torch.device(device)
        x = self.x_prev
        if x is None or tuple(x.shape) != shape or (device is not None and x.device != device):
            x = self._initial(shape, device)
        mu, sigma = self.mu.to(x.device), self.sigma.to(x.device)
        noise = torch.randn(shape, device=x.device)
        x = x + self.theta * (mu - x) * self.dt + sigma * math.sqrt(self.dt) * noise
        self.x_prev = x
        return x

    def _initial(self, shape: tuple[int, ...], device) -> torch.Tensor:
        if self.x0 is None:
            return torch.zeros(shape, device=device)
        return self.x0.to(device).expand(shape).clone()

    def reset(self) -> None:
        """Start the process again from ``x0`` at the next call."""
        self.x_prev = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The process's current state ``x_prev`` (``(*batch_shape, d)``; no key before the
        first call or after :meth:`reset`), so a resumed run continues the same process."""
        return {} if self.x_prev is None else {"x_prev": self.x_prev.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a :meth:`state_dict`."""
        unknown = sorted(set(state) - {"x_prev"})
        if unknown:
            raise ValueError(f"state: OUActionNoise keeps only 'x_prev', given keys {unknown}")
        x = state.get("x_prev")
        if x is not None and (x.ndim < 1 or x.shape[-1] != self.ac_dim):
            raise ValueError(
                f"state['x_prev']: expected shape (..., {self.ac_dim}), given {tuple(x.shape)}"
            )
        self.x_prev = None if x is None else x.detach().clone()
