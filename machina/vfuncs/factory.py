"""A state-value function on machina's ready-made nets."""

from __future__ import annotations

import gymnasium as gym

from machina.nets import VNet, VNetLSTM
from machina.vfuncs.deterministic_state_vfunc import DeterministicSVfunc


def make_vf(
    observation_space: gym.Space, rnn: bool = False, h_size: int = 64, activation: str = "relu"
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
    activation : str
        Feed-forward only: the hidden layers' activation (a key of
        ``machina.nets.HIDDEN_ACTIVATIONS``).
    """
    if rnn and activation != "relu":
        raise ValueError(
            f"activation: the LSTM net has its own (ReLU); expected 'relu' with rnn=True, "
            f"got {activation!r}"
        )
    if rnn:
        net = VNetLSTM(observation_space, h_size=h_size, cell_size=h_size)
    else:
        net = VNet(observation_space, h1=h_size, h2=h_size, activation=activation)
    return DeterministicSVfunc(observation_space, net, rnn=rnn)
