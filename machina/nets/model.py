"""MLP net of a dynamics model: ``(obs, acs)`` -> observation change."""

import gymnasium as gym
import torch
from torch import nn

from machina.nets._layers import HIDDEN_GAIN, flatten_obs, init_linear, ob_dim_of
from machina.utils.spaces import check_flat_space, check_space


class ModelNet(nn.Module):
    """MLP dynamics net: ``(obs (*lead, ob_dim), acs (*lead, ac_dim))`` -> ``(*lead, ob_dim)``.

    The output is the observation change (delta), in whatever units the inputs come in;
    ``machina.models.DeterministicSModel`` feeds it standardised inputs and reads a
    standardised delta.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        One-dimensional observations.
    action_space : gymnasium.spaces.Box
        One-dimensional actions.
    h1, h2 : int
        Hidden layer sizes (ReLU).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        h1: int = 200,
        h2: int = 200,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        ob_dim = ob_dim_of(observation_space, owner)
        check_space("action_space", action_space, gym.spaces.Box, owner)
        check_flat_space("action_space", action_space, owner)
        self.ob_ndim = len(observation_space.shape)
        self.fc1 = init_linear(nn.Linear(ob_dim + action_space.shape[0], h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.output_layer = init_linear(nn.Linear(h2, ob_dim), 1.0)

    def forward(self, obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
        """Observation change ``(*lead, ob_dim)``."""
        h = torch.relu(self.fc1(torch.cat([flatten_obs(obs, self.ob_ndim), acs], dim=-1)))
        h = torch.relu(self.fc2(h))
        return self.output_layer(h)
