"""Pieces shared by the MLP and LSTM nets: initialisation, flattening and policy heads."""

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.utils.spaces import check_flat_space, check_space
from machina.utils.tensors import detached_if_no_grad

#: initial state-independent log standard deviation: std ~0.37 in the normalised action
#: space [-1, 1], wide enough to explore, narrow enough that few actions are clipped.
LOG_STD_INIT = -1.0
HIDDEN_GAIN = math.sqrt(2.0)
#: bounds of a state-dependent log standard deviation (``PolHead(state_std=True)``), as in
#: SAC's reference implementation and stable-baselines3: wide, only against overflow.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
#: small output gain so that the initial policy is close to uniform / centred
#: ("What Matters in On-Policy RL", Andrychowicz et al. 2020, section 3.2).
POLICY_GAIN = 0.01

#: the hidden activations of machina's MLP nets (their ``activation`` argument), each with
#: torch's default parameters: name -> (function, its module class). Read-only: the sampler's
#: numpy copy of a net rebuilds each from its module class's defaults.
HIDDEN_ACTIVATIONS: Mapping[str, tuple[Callable[[torch.Tensor], torch.Tensor], type[nn.Module]]] = (
    MappingProxyType(
        {
            "relu": (torch.relu, nn.ReLU),
            "tanh": (torch.tanh, nn.Tanh),
            "elu": (nn.functional.elu, nn.ELU),
            "silu": (nn.functional.silu, nn.SiLU),
            "leaky_relu": (nn.functional.leaky_relu, nn.LeakyReLU),
            "gelu": (nn.functional.gelu, nn.GELU),
        }
    )
)


def check_activation(activation: str, owner: str) -> str:
    """``activation``, checked to be a key of :data:`HIDDEN_ACTIVATIONS`."""
    if not isinstance(activation, str) or activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation must be one of {sorted(HIDDEN_ACTIVATIONS)}, given {activation!r}"
        )
    return activation


def init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights with ``gain`` and zero bias; returns ``layer``."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def flatten_obs(obs: torch.Tensor, ob_ndim: int) -> torch.Tensor:
    """``(*lead, *ob_shape)`` -> ``(*lead, ob_dim)``."""
    if ob_ndim == 0:
        return obs.unsqueeze(-1)
    return obs.flatten(start_dim=obs.ndim - ob_ndim)


def ob_dim_of(observation_space: gym.Space, owner: str) -> int:
    """Flat size of a Box observation, with a clear error for other spaces."""
    check_space("observation_space", observation_space, gym.spaces.Box, owner)
    return int(np.prod(observation_space.shape, dtype=np.int64))


def action_encoding_dim(action_space: gym.Space, owner: str) -> int:
    """Size of an action as a Q-net input: Box flat size, or one-hot size for discrete spaces."""
    space = check_space(
        "action_space",
        action_space,
        (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete),
        owner,
    )
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        check_flat_space("action_space", space, owner)
        return int(space.nvec.sum())
    return int(np.prod(space.shape, dtype=np.int64))


def encode_acs(
    acs: torch.Tensor, action_space: gym.Space, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Actions as features of ``dtype`` (the net's: float64 after ``.double()``): Box
    flattened, Discrete / MultiDiscrete one-hot.

    ``acs (*lead, *ac_shape)`` -> ``(*lead, action_encoding_dim)``.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return nn.functional.one_hot(acs.long(), int(action_space.n)).to(dtype)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        one_hots = [
            nn.functional.one_hot(acs[..., i].long(), int(n)).to(dtype)
            for i, n in enumerate(action_space.nvec)
        ]
        return torch.cat(one_hots, dim=-1)
    return flatten_obs(acs.to(dtype), len(action_space.shape))


class PolHead(nn.Module):
    """Map features ``(*lead, in_features)`` to the policy outputs for ``action_space``.

    Box: ``(mean (*lead, d) in [-1, 1] via tanh, log_std (*lead, d))`` with a learned
    state-independent ``log_std``, or ``(mean,)`` when ``deterministic``; with
    ``squash_mean=False`` the mean is the linear layer's output, unbounded (the policy clips
    the actions it sends to the environment, as stable-baselines3 and CleanRL do); with
    ``state_std=True`` ``log_std`` is a second linear layer's output, clamped to
    ``[LOG_STD_MIN, LOG_STD_MAX]``, a function of the state (SAC's policy, Haarnoja et al.
    2018), starting at ``LOG_STD_INIT`` in every state. Discrete:
    ``(pi (*lead, n),)``. MultiDiscrete: ``(pi (*lead, k, n_max),)``, where the classes beyond a
    sub-action's own ``n`` get probability 0.
    """

    #: class defaults, so heads pickled before the options existed still load
    squash_mean = True
    state_std = False

    def __init__(
        self,
        in_features: int,
        action_space: gym.Space,
        owner: str,
        deterministic: bool = False,
        squash_mean: bool = True,
        state_std: bool = False,
    ) -> None:
        super().__init__()
        space = check_space(
            "action_space",
            action_space,
            (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete),
            owner,
        )
        if state_std and (deterministic or not isinstance(space, gym.spaces.Box)):
            raise ValueError(
                f"{owner}: state_std=True needs a stochastic Box policy (a log_std to output), "
                f"given deterministic={deterministic} and {type(space).__name__} actions"
            )
        self.action_space = space
        self.deterministic = deterministic
        self.squash_mean = bool(squash_mean)
        self.state_std = bool(state_std)
        if isinstance(space, gym.spaces.Box):
            check_flat_space("action_space", space, owner)
            dim = space.shape[0]
            self.mean_layer = init_linear(nn.Linear(in_features, dim), POLICY_GAIN)
            if state_std:
                self.log_std_layer = init_linear(nn.Linear(in_features, dim), POLICY_GAIN)
                nn.init.constant_(self.log_std_layer.bias, LOG_STD_INIT)
            elif not deterministic:
                self.log_std_param = nn.Parameter(torch.full((dim,), LOG_STD_INIT))
        elif isinstance(space, gym.spaces.Discrete):
            self.output_layer = init_linear(nn.Linear(in_features, int(space.n)), POLICY_GAIN)
        else:
            check_flat_space("action_space", space, owner)
            nvec = torch.as_tensor(space.nvec, dtype=torch.int64)
            self.n_max = int(nvec.max())
            self.output_layer = init_linear(
                nn.Linear(in_features, len(nvec) * self.n_max), POLICY_GAIN
            )
            valid = torch.arange(self.n_max) < nvec.unsqueeze(-1)  # (k, n_max)
            self.register_buffer("valid", valid, persistent=False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Policy outputs; see the class docstring for shapes."""
        if isinstance(self.action_space, gym.spaces.Box):
            mean = self.mean_layer(features)
            if self.squash_mean:
                mean = torch.tanh(mean)
            if self.deterministic:
                return (mean,)
            if self.state_std:
                return mean, self.log_std_layer(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
            return mean, detached_if_no_grad(self.log_std_param.expand_as(mean))
        logits = self.output_layer(features)
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            logits = logits.unflatten(-1, self.valid.shape).masked_fill(~self.valid, -torch.inf)
        return (torch.softmax(logits, dim=-1),)
