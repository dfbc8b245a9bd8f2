"""Policy of uniformly random actions, e.g. for warm-up exploration or baselines."""

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pols.base import ActResult, BasePol
from machina.utils.recurrent import HiddenState
from machina.utils.spaces import is_integer_box, space_shape


class RandomPol(BasePol):
    """Draw actions uniformly from the action space, batched; needs no net.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation (fixes the number of leading dims of ``obs``).
    action_space : gymnasium.spaces.Box, Discrete or MultiDiscrete
        Bounded Box dims are uniform on ``[low, high]``; unbounded ones follow gymnasium's
        ``Box.sample`` (normal, or shifted exponential when bounded on one side).
    net : torch.nn.Module, optional
        Ignored; accepted for a uniform constructor.
    rnn : bool
        Only sets the leading dims of ``obs``: ``(T, B)`` when True; no hidden state is kept.
    normalize_ac : bool
        Box only: draw ``ac`` uniformly in ``[-1, 1]`` and scale it to the bounds, so that the
        recorded ``acs`` live in the same space as a ``GaussianPol(normalize_ac=True)``'s.

    Notes
    -----
    ``a_i`` is an empty dict and :attr:`pd` is None. :meth:`deterministic_ac_real` also draws
    random actions: a uniform distribution has no single mode.
    """

    action_space_types = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete)
    uses_net = False

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        net: nn.Module | None = None,
        rnn: bool = False,
        normalize_ac: bool = False,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        obs = self._obs_to_tensor(obs)
        ob_shape = space_shape("observation_space", self.observation_space)
        lead = obs.shape[: obs.ndim - len(ob_shape)]
        ac = self._sample(lead, obs.device)
        return self._ac_real_torch(ac), ac, {}

    def _sample(self, lead: torch.Size, device: torch.device) -> torch.Tensor:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return torch.randint(int(space.n), lead, device=device)
        if isinstance(space, gym.spaces.MultiDiscrete):
            nvec = torch.as_tensor(space.nvec, device=device)
            draws = torch.floor(torch.rand(lead + nvec.shape, device=device) * nvec).long()
            return torch.minimum(draws, nvec - 1)
        shape = lead + space_shape("action_space", space)
        if is_integer_box(space):  # bounded, as integers are
            return self._sample_integers(shape, device)
        if self.normalize_ac:
            return torch.rand(shape, device=device) * 2.0 - 1.0
        low_ok = torch.isfinite(self._ac_low).to(device)
        high_ok = torch.isfinite(self._ac_high).to(device)
        # zero the infinite bounds so that no inf * 0 turns into NaN in the unused branches
        low = torch.where(low_ok, self._ac_low.to(device), 0.0)
        high = torch.where(high_ok, self._ac_high.to(device), 0.0)
        uniform = low + torch.rand(shape, device=device) * (high - low)
        exponential = torch.empty(shape, device=device).exponential_()
        one_sided = torch.where(low_ok, low + exponential, high - exponential)
        unbounded = torch.where(low_ok | high_ok, one_sided, torch.randn(shape, device=device))
        return torch.where(low_ok & high_ok, uniform, unbounded)

    def _sample_integers(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """An integer Box's actions uniform over ``low..high`` as gymnasium's ``Box.sample``
        draws them, in the policy's space (scaled to [-1, 1] with ``normalize_ac``)."""
        low, high = self._ac_low.to(device), self._ac_high.to(device)
        ints = torch.minimum(
            low + torch.floor(torch.rand(shape, device=device) * (high - low + 1)), high
        )
        if not self.normalize_ac:
            return ints
        span = torch.where(high > low, high - low, 1.0)
        return (ints - low) / span * 2.0 - 1.0
