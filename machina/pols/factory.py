"""A policy with machina's ready-made nets for any supported action space."""

from __future__ import annotations

import gymnasium as gym

from machina.nets import PolNet, PolNetLSTM
from machina.pols.base import BasePol
from machina.pols.categorical_pol import CategoricalPol
from machina.pols.gaussian_pol import GaussianPol
from machina.pols.multi_categorical_pol import MultiCategoricalPol

_POLS = {
    gym.spaces.Box: GaussianPol,
    gym.spaces.Discrete: CategoricalPol,
    gym.spaces.MultiDiscrete: MultiCategoricalPol,
}


def make_pol(
    observation_space: gym.Space, action_space: gym.Space, rnn: bool = False, h_size: int = 64
) -> BasePol:
    """The policy machina pairs with ``action_space``, on an MLP or LSTM net.

    Box gives a ``GaussianPol``, Discrete a ``CategoricalPol`` and MultiDiscrete a
    ``MultiCategoricalPol``.

    Parameters
    ----------
    observation_space, action_space : gymnasium.Space
        The environment's spaces.
    rnn : bool
        Use ``PolNetLSTM`` (hidden and cell size ``h_size``) instead of ``PolNet``.
    h_size : int
        Units per hidden layer.
    """
    pol_cls = _POLS.get(type(action_space))
    if pol_cls is None:
        supported = ", ".join(cls.__name__ for cls in _POLS)
        raise ValueError(f"action_space: expected one of {supported}, got {action_space}")
    if rnn:
        net = PolNetLSTM(observation_space, action_space, h_size=h_size, cell_size=h_size)
    else:
        net = PolNet(observation_space, action_space, h1=h_size, h2=h_size)
    return pol_cls(observation_space, action_space, net, rnn=rnn)
