"""MLP net of a mixture-of-Gaussians policy."""

import gymnasium as gym
import torch
from torch import nn

from machina.nets._layers import (
    HIDDEN_GAIN,
    LOG_STD_INIT,
    POLICY_GAIN,
    flatten_obs,
    init_linear,
    ob_dim_of,
)
from machina.utils.spaces import check_flat_space, check_space
from machina.utils.tensors import detached_if_no_grad


class MixturePolNet(nn.Module):
    """MLP net for ``MixtureGaussianPol``: ``obs -> (pi, mean, log_std)``.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    action_space : gymnasium.spaces.Box
        One-dimensional, ``(d,)``.
    num_components : int
        Number of mixture components ``K``.
    h1, h2 : int
        Hidden layer sizes (ReLU).

    Notes
    -----
    Means pass through ``tanh`` (in ``[-1, 1]``, the normalised action space); their initial
    biases are spread evenly over ``[-0.5, 0.5]`` so that the components start apart and the
    mixture is multi-modal from the start instead of ``K`` copies of one Gaussian. ``log_std``
    is a learned state-independent ``(K, d)`` parameter.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        num_components: int = 3,
        h1: int = 64,
        h2: int = 64,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_space("action_space", action_space, gym.spaces.Box, owner)
        check_flat_space("action_space", action_space, owner)
        if isinstance(num_components, bool) or not isinstance(num_components, int):
            raise ValueError(f"num_components: expected an int >= 1, got {num_components!r}")
        if num_components < 1:
            raise ValueError(f"num_components: expected an int >= 1, got {num_components!r}")
        ob_dim = ob_dim_of(observation_space, owner)
        self.ob_ndim = len(observation_space.shape)
        self.num_components, self.ac_dim = num_components, action_space.shape[0]
        self.fc1 = init_linear(nn.Linear(ob_dim, h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.pi_layer = init_linear(nn.Linear(h2, num_components), POLICY_GAIN)
        self.mean_layer = init_linear(nn.Linear(h2, num_components * self.ac_dim), POLICY_GAIN)
        with torch.no_grad():
            spread = torch.linspace(-0.5, 0.5, num_components) if num_components > 1 else None
            if spread is not None:
                self.mean_layer.bias.copy_(spread.repeat_interleave(self.ac_dim))
        self.log_std_param = nn.Parameter(torch.full((num_components, self.ac_dim), LOG_STD_INIT))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pi (*lead, K)``, ``mean (*lead, K, d)``, ``log_std (*lead, K, d)`` for ``obs``."""
        h = torch.relu(self.fc1(flatten_obs(obs, self.ob_ndim)))
        h = torch.relu(self.fc2(h))
        pi = torch.softmax(self.pi_layer(h), dim=-1)
        mean = torch.tanh(self.mean_layer(h)).unflatten(-1, (self.num_components, self.ac_dim))
        return pi, mean, detached_if_no_grad(self.log_std_param.expand_as(mean))
