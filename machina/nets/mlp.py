"""Two-hidden-layer MLP nets: policies, state value and state-action value."""

import gymnasium as gym
import torch
from torch import nn

from machina.nets._layers import (
    HIDDEN_ACTIVATIONS,
    HIDDEN_GAIN,
    POLICY_GAIN,
    PolHead,
    action_encoding_dim,
    check_activation,
    encode_acs,
    flatten_obs,
    init_linear,
    ob_dim_of,
)
from machina.utils.spaces import check_flat_space, check_space


def _hidden(net: "PolNet | SDEPolNet | VNet | QNet", x: torch.Tensor) -> torch.Tensor:
    """The two hidden layers every net here shares: ``act(fc2(act(fc1(x))))``, ``act`` the
    net's ``activation``; ``x (*lead, in)`` -> ``(*lead, h2)``."""
    act = HIDDEN_ACTIVATIONS[net.activation][0]
    return act(net.fc2(act(net.fc1(x))))


class PolNet(nn.Module):
    """MLP policy net.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    action_space : gymnasium.spaces.Box, Discrete or MultiDiscrete
        Decides the outputs (see :meth:`forward`).
    h1, h2 : int
        Hidden layer sizes.
    deterministic : bool
        Box only: return ``mean`` alone (for deterministic policies).
    squash_mean : bool
        Box only: bound the mean to [-1, 1] with ``tanh`` (machina's default); False: a
        linear mean, the actions clipped to the space by the policy (stable-baselines3's).
    activation : str
        The hidden layers' activation, a key of ``machina.nets.HIDDEN_ACTIVATIONS``
        (``"relu"``, ``"tanh"``, ``"elu"``, ``"silu"``, ``"leaky_relu"``, ``"gelu"``).
    state_std : bool
        Box, stochastic only: ``log_std`` a function of the state (a linear layer on the
        hidden features, clamped to [-20, 2]; SAC's and stable-baselines3's SAC policy)
        instead of one learned vector. Such a net samples through torch, not the sampler's
        numpy fast path.
    """

    #: a class default, so nets pickled before the option existed still load
    activation = "relu"

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.Space,
        h1: int = 64,
        h2: int = 64,
        deterministic: bool = False,
        squash_mean: bool = True,
        activation: str = "relu",
        state_std: bool = False,
    ) -> None:
        super().__init__()
        ob_dim = ob_dim_of(observation_space, type(self).__name__)
        self.activation = check_activation(activation, type(self).__name__)
        self.ob_ndim = len(observation_space.shape)
        self.fc1 = init_linear(nn.Linear(ob_dim, h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.head = PolHead(
            h2, action_space, type(self).__name__, deterministic, squash_mean, state_std
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Policy outputs for ``obs (*lead, *ob_shape)``.

        Returns
        -------
        Box: ``(mean (*lead, d), log_std (*lead, d))``, or ``mean`` when deterministic.
        Discrete: ``pi (*lead, n)``. MultiDiscrete: ``pi (*lead, k, n_max)``.
        """
        outputs = self.head(_hidden(self, flatten_obs(obs, self.ob_ndim)))
        return outputs[0] if len(outputs) == 1 else outputs


class SDEPolNet(nn.Module):
    """MLP net for :class:`machina.pols.GaussianSDEPol` (and ``TanhGaussianSDEPol``): the
    mean and the exploration features.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)``.
    h1, h2 : int
        Hidden layer sizes; the second layer's output is the features ``(h2,)``.
    activation : str
        The hidden layers' activation (see :class:`PolNet`).

    Notes
    -----
    The mean is linear in the features, as in stable-baselines3's gSDE policies: the policy
    clips actions to the space, and a ``tanh`` would saturate under the state-dependent noise.
    """

    activation = "relu"  # the class default, for nets pickled before the option

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        h1: int = 64,
        h2: int = 64,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        ob_dim = ob_dim_of(observation_space, owner)
        self.activation = check_activation(activation, owner)
        check_space("action_space", action_space, gym.spaces.Box, owner)
        check_flat_space("action_space", action_space, owner)
        self.ob_ndim = len(observation_space.shape)
        self.fc1 = init_linear(nn.Linear(ob_dim, h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.mean_layer = init_linear(nn.Linear(h2, action_space.shape[0]), POLICY_GAIN)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean (*lead, d), features (*lead, h2))`` for ``obs (*lead, *ob_shape)``."""
        h = _hidden(self, flatten_obs(obs, self.ob_ndim))
        return self.mean_layer(h), h


class VNet(nn.Module):
    """MLP state-value net: ``obs (*lead, *ob_shape)`` -> ``(*lead, 1)``.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    h1, h2 : int
        Hidden layer sizes.
    activation : str
        The hidden layers' activation (see :class:`PolNet`).
    """

    activation = "relu"  # the class default, for nets pickled before the option

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        h1: int = 64,
        h2: int = 64,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        ob_dim = ob_dim_of(observation_space, type(self).__name__)
        self.activation = check_activation(activation, type(self).__name__)
        self.ob_ndim = len(observation_space.shape)
        self.fc1 = init_linear(nn.Linear(ob_dim, h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.output_layer = init_linear(nn.Linear(h2, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """State values ``(*lead, 1)`` for ``obs (*lead, *ob_shape)``."""
        return self.output_layer(_hidden(self, flatten_obs(obs, self.ob_ndim)))


class QNet(nn.Module):
    """MLP state-action value net: ``(obs, acs)`` -> ``(*lead, 1)``.

    Box actions enter as they are; Discrete and MultiDiscrete actions (integer indices) enter
    one-hot encoded.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    action_space : gymnasium.spaces.Box, Discrete or MultiDiscrete
        Actions ``(*ac_shape)``.
    h1, h2 : int
        Hidden layer sizes.
    activation : str
        The hidden layers' activation (see :class:`PolNet`).
    """

    activation = "relu"  # the class default, for nets pickled before the option

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.Space,
        h1: int = 64,
        h2: int = 64,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.activation = check_activation(activation, type(self).__name__)
        self.action_space = action_space
        ob_dim = ob_dim_of(observation_space, type(self).__name__)
        self.ob_ndim = len(observation_space.shape)
        ac_dim = action_encoding_dim(action_space, type(self).__name__)
        self.fc1 = init_linear(nn.Linear(ob_dim + ac_dim, h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.output_layer = init_linear(nn.Linear(h2, 1), 1.0)

    def forward(self, obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
        """Q values ``(*lead, 1)`` for ``obs (*lead, *ob_shape)`` and ``acs (*lead, *ac_shape)``."""
        features = torch.cat(
            [flatten_obs(obs, self.ob_ndim), encode_acs(acs, self.action_space, obs.dtype)],
            dim=-1,
        )
        return self.output_layer(_hidden(self, features))
