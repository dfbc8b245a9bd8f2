"""A state-value function on machina's ready-made nets."""

from __future__ import annotations

import gymnasium as gym

from machina.nets import VNet, VNetLSTM
from machina.vfuncs.deterministic_state_vfunc import DeterministicSVfunc


def make_vf(
    observation_space: gym.Space, rnn: bool = False, h_size: int = 64
) -> DeterministicSVfunc:
    """``DeterministicSVfunc`` on a ``VNet`` MLP, or a ``VNetLSTM`` when ``rnn``.

    Parameters
    ----------
    observation_space : gymnasium.Space
        The environment's observation space.
    rnn : bool
        Recurrent value function (hidden and cell size ``h_size``).
    h_size : int
        Units per hidden layer.
    """
    if rnn:
        net = VNetLSTM(observation_space, h_size=h_size, cell_size=h_size)
    else:
        net = VNet(observation_space, h1=h_size, h2=h_size)
    return DeterministicSVfunc(observation_space, net, rnn=rnn)
