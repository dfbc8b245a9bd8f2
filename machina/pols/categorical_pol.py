"""Categorical policy for Discrete action spaces."""

from typing import cast

import gymnasium as gym
import torch
from torch import nn

from machina.pds.categorical_pd import CategoricalPd
from machina.pols.base import BasePol


class CategoricalPol(BasePol):
    """Categorical policy.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Discrete
        ``n`` actions; ``ac`` is in ``0..n-1``, ``ac_real`` adds the space's ``start``.
    net : torch.nn.Module
        ``net(obs) -> pi (B, n)`` probabilities; when recurrent
        ``net(obs, hs, h_masks) -> (pi (T, B, n), hs)``.
    rnn : bool
        Whether ``net`` is recurrent.
    normalize_ac : bool
        Accepted for the signature all policies share; discrete actions are never scaled.

    Notes
    -----
    ``ac`` is int64 ``(*lead,)``; ``a_i`` holds ``pi``.
    """

    action_space_types = (gym.spaces.Discrete,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        net: nn.Module,
        rnn: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
        self.pd = CategoricalPd()

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        n = int(cast(gym.spaces.Discrete, self.action_space).n)  # checked in __init__
        if len(outputs) != 1 or tuple(outputs[0].shape[-1:]) != (n,):
            raise self._net_output_error(f"probabilities pi (..., {n})", outputs)

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return dict(pi=outputs[0])

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.argmax(params["pi"], dim=-1)
