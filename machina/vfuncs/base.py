"""Base classes of value functions: an observation space, a net and the recurrence protocol."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.utils.recurrent import RecurrentMixin, StateActionModule
from machina.utils.recurrent import unsqueeze_front as _unsqueeze_front
from machina.utils.spaces import space_shape


class BaseSVfunc(RecurrentMixin, nn.Module):
    """Base of state-value functions ``V(s)``: holds ``observation_space``, ``net``, ``rnn``
    and the hidden state (``reset()`` forgets it).

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    net : torch.nn.Module
        The value net.
    rnn : bool
        Whether ``net`` is recurrent (see :class:`machina.pols.BasePol`).
    """

    def __init__(self, observation_space: gym.Space, net: nn.Module, rnn: bool = False) -> None:
        nn.Module.__init__(self)
        self._init_recurrent(observation_space, net, rnn)

    def _check_obs_shape(self, obs: Any) -> torch.Tensor:
        """``obs`` with leading dims added up to ``(B, *ob_shape)`` (``(T, B, ...)`` if rnn)."""
        ob_shape = space_shape("observation_space", self.observation_space)
        return _unsqueeze_front(obs, len(ob_shape), self.rnn)


class BaseSAVfunc(StateActionModule):
    """Base of state-action value functions ``Q(s, a)``: ``observation_space``,
    ``action_space``, ``net``, ``rnn`` and the hidden state.

    Parameters
    ----------
    observation_space, action_space : gymnasium.Space
        Spaces of one observation and one action.
    net : torch.nn.Module
        The Q net.
    rnn : bool
        Whether ``net`` is recurrent.
    """
