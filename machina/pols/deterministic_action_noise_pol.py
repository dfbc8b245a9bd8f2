"""Deterministic policy that explores by adding noise to its action (DDPG, TD3)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pds.deterministic_pd import DeterministicPd
from machina.pols.base import ActResult, BasePol
from machina.utils.recurrent import HiddenState
from machina.utils.spaces import check_flat_space, space_shape


class DeterministicActionNoisePol(BasePol):
    """Deterministic policy ``ac = mean(obs)`` plus exploration noise when sampling.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)``; finite bounds when ``normalize_ac``.
    net : torch.nn.Module
        ``net(obs) -> mean (B, d)``, e.g. ``PolNet(..., deterministic=True)``; when recurrent
        ``net(obs, hs, h_masks) -> (mean (T, B, d), hs)``. With ``normalize_ac`` the mean
        should lie in ``[-1, 1]`` (e.g. through ``tanh``).
    noise : machina.noise.BaseActionNoise, optional
        Added to ``mean`` by :meth:`forward` (not by :meth:`deterministic_ac_real` or
        :meth:`pd_params`), in the policy's action space; the noisy action is clipped to it.
        None: no exploration noise.
    rnn : bool
        Whether ``net`` is recurrent.
    normalize_ac : bool
        The policy acts in ``[-1, 1]``, scaled linearly to ``[low, high]``.

    Notes
    -----
    ``ac`` (recorded as ``acs``) is the clipped noisy action that was executed; ``a_i`` holds
    the noiseless ``mean``. :attr:`pd` is a ``DeterministicPd`` at ``mean``.
    """

    action_space_types = (gym.spaces.Box,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        noise: Any = None,
        rnn: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
        if noise is not None and not callable(noise):
            raise ValueError(
                f"noise: {type(self).__name__} needs a machina.noise action noise (callable) "
                f"or None, got {noise!r}"
            )
        self.noise = noise
        self.pd = DeterministicPd()

    def _check_action_space(self, action_space: gym.Space) -> None:
        super()._check_action_space(action_space)
        check_flat_space("action_space", action_space, type(self).__name__)

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        dim = space_shape("action_space", self.action_space)[0]
        if len(outputs) != 1 or tuple(outputs[0].shape[-1:]) != (dim,):
            raise self._net_output_error(f"mean (..., {dim}) alone", outputs)

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return dict(mean=outputs[0])

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["mean"]

    def clip_ac(self, ac: torch.Tensor) -> torch.Tensor:
        """Clip a policy-space action to the policy's bounds: ``[-1, 1]`` or ``[low, high]``."""
        if self.normalize_ac:
            return ac.clamp(-1.0, 1.0)
        return torch.clamp(ac, self._ac_low.to(ac.device), self._ac_high.to(ac.device))

    def forward(
        self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None, no_noise: bool = False
    ) -> ActResult:
        """Act: the net's action plus noise (see :meth:`BasePol.forward`); ``no_noise=True``
        (machina 0.x's flag, also accepted as the second positional argument) gives the
        noise-free action, as :meth:`deterministic_ac_real` does."""
        if isinstance(hs, bool):  # 0.x's forward(obs, no_noise)
            return self._act(obs, None, h_masks, deterministic=hs)
        return self._act(obs, hs, h_masks, deterministic=no_noise)

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        obs = self._obs_to_tensor(obs)
        outputs, _ = self._call_net(obs, hs, h_masks)
        params = self._pd_params(outputs)
        ac = params["mean"]
        if not deterministic and self.noise is not None:
            ac = self.clip_ac(ac + self.noise(ac.shape[:-1], ac.device).to(ac.dtype))
        return self._ac_real_torch(ac.detach()), ac, params

    def reset(self) -> None:
        """Forget the hidden state and restart the noise process."""
        super().reset()
        if self.noise is not None and callable(getattr(self.noise, "reset", None)):
            self.noise.reset()
