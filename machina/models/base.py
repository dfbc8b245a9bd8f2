"""Base class of dynamics models: spaces, a net and the recurrence protocol."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.utils.recurrent import RecurrentMixin
from machina.utils.recurrent import unsqueeze_front as _unsqueeze_front


class BaseModel(RecurrentMixin, nn.Module):
    """Base of models ``(obs, acs) -> prediction``: ``observation_space``, ``action_space``,
    ``net``, ``rnn`` and the hidden state (``reset()`` forgets it).

    Parameters
    ----------
    observation_space, action_space : gymnasium.Space
        Spaces of one observation and one action.
    net : torch.nn.Module
        The model's net.
    rnn : bool
        Whether ``net`` is recurrent (see :class:`machina.pols.BasePol`).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        net: nn.Module,
        rnn: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        self.action_space = action_space
        self._init_recurrent(observation_space, net, rnn)

    def _check_obs_shape(self, obs: Any) -> torch.Tensor:
        """``obs`` with leading dims added up to ``(B, *ob_shape)`` (``(T, B, ...)`` if rnn)."""
        return _unsqueeze_front(obs, len(self.observation_space.shape), self.rnn)

    def _check_acs_shape(self, acs: Any) -> torch.Tensor:
        """``acs`` with leading dims added up to ``(B, *ac_shape)`` (``(T, B, ...)`` if rnn)."""
        return _unsqueeze_front(acs, len(self.action_space.shape), self.rnn)
