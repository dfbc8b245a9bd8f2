"""A policy with machina's ready-made nets for any supported action space."""

from __future__ import annotations

import gymnasium as gym
import torch

from machina.nets import PolNet, PolNetLSTM, SDEPolNet
from machina.pols.base import BasePol
from machina.pols.categorical_pol import CategoricalPol
from machina.pols.gaussian_pol import GaussianPol
from machina.pols.gaussian_sde_pol import GaussianSDEPol
from machina.pols.multi_categorical_pol import MultiCategoricalPol

_POLS = {
    gym.spaces.Box: GaussianPol,
    gym.spaces.Discrete: CategoricalPol,
    gym.spaces.MultiDiscrete: MultiCategoricalPol,
}
#: gSDE's initial log-std of the exploration matrix (stable-baselines3's -2 for these tasks)
SDE_LOG_STD_INIT = -2.0


def make_pol(
    observation_space: gym.Space,
    action_space: gym.Space,
    rnn: bool = False,
    h_size: int = 64,
    log_std_init: float | None = None,
    sde_sample_freq: int | None = None,
    squash_mean: bool | None = None,
    sde_per_env_noise: bool = False,
    activation: str = "relu",
    normalize_ac: bool | None = None,
) -> BasePol:
    """The policy machina pairs with ``action_space``, on an MLP or LSTM net.

    Box gives a ``GaussianPol`` (a ``GaussianSDEPol`` on an ``SDEPolNet`` with
    ``sde_sample_freq``), Discrete a ``CategoricalPol`` and MultiDiscrete a
    ``MultiCategoricalPol``.

    Parameters
    ----------
    observation_space, action_space : gymnasium.Space
        The environment's spaces.
    rnn : bool
        Use ``PolNetLSTM`` (hidden and cell size ``h_size``) instead of ``PolNet``.
    h_size : int
        Units per hidden layer.
    log_std_init : float, optional
        Box only: initial log-std (default the net's own, -1; with gSDE -2).
    sde_sample_freq : int, optional
        Box, feed-forward only: explore with gSDE, the exploration matrix redrawn every
        ``sde_sample_freq`` acting calls (-1: only on ``reset_noise``).
    squash_mean : bool, optional
        Box only: the Gaussian mean through ``tanh`` into [-1, 1]; False: a linear mean, the
        actions clipped to the space (stable-baselines3's). Default: True when the actions
        are scaled onto the bounds (``normalize_ac``), else False (a mean in the environment's
        units must not stop at ±1). gSDE's mean is always linear (the option changes nothing
        there).
    sde_per_env_noise : bool
        gSDE only: one exploration matrix per environment (row of an acting batch) instead
        of one for all (``GaussianSDEPol``'s ``per_env_noise``).
    activation : str
        Feed-forward only: the hidden layers' activation, a key of
        ``machina.nets.HIDDEN_ACTIVATIONS`` (``"relu"``, ``"tanh"``, ...).
    normalize_ac : bool, optional
        Box only: the policy acts in ``[-1, 1]``, scaled onto the bounds (True), or in the
        environment's units (False). Default: True for a Box bounded on both sides, False
        otherwise.
    """
    pol_cls = _POLS.get(type(action_space))
    if pol_cls is None:
        supported = ", ".join(cls.__name__ for cls in _POLS)
        raise ValueError(f"action_space: expected one of {supported}, got {action_space}")
    box = isinstance(action_space, gym.spaces.Box)
    if log_std_init is not None and not box:
        raise ValueError(
            f"log_std_init: only a Box action space has a Gaussian policy, got {action_space}"
        )
    if squash_mean is not None and not squash_mean and not box:
        raise ValueError(
            f"squash_mean: False needs a Box action space (a Gaussian mean), got {action_space}"
        )
    if normalize_ac is None:
        normalize_ac = not box or action_space.is_bounded("both")
    elif not box:
        raise ValueError(
            f"normalize_ac: only a Box action space is scaled, got {action_space}; leave it None"
        )
    if squash_mean is None:
        squash_mean = normalize_ac
    if rnn and activation != "relu":
        raise ValueError(
            f"activation: the LSTM net has its own (ReLU); expected 'relu' with rnn=True, "
            f"got {activation!r}"
        )
    if sde_per_env_noise and sde_sample_freq is None:
        raise ValueError("sde_per_env_noise: True needs gSDE (an sde_sample_freq), got None")
    if sde_sample_freq is not None:
        if not box or rnn:
            raise ValueError(
                "sde_sample_freq: gSDE needs a Box action space and a feed-forward net, got "
                f"{action_space} with rnn={rnn}"
            )
        net = SDEPolNet(
            observation_space, action_space, h1=h_size, h2=h_size, activation=activation
        )
        std = SDE_LOG_STD_INIT if log_std_init is None else log_std_init
        return GaussianSDEPol(
            observation_space,
            action_space,
            net,
            log_std_init=std,
            sample_freq=sde_sample_freq,
            normalize_ac=normalize_ac,
            per_env_noise=sde_per_env_noise,
        )
    if rnn:
        net = PolNetLSTM(observation_space, action_space, h_size, h_size, squash_mean=squash_mean)
    else:
        net = PolNet(
            observation_space,
            action_space,
            h1=h_size,
            h2=h_size,
            squash_mean=squash_mean,
            activation=activation,
        )
    if log_std_init is not None:
        with torch.no_grad():
            net.head.log_std_param.fill_(float(log_std_init))
    if box:
        return pol_cls(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
    return pol_cls(observation_space, action_space, net, rnn=rnn)
