"""Discriminator nets for adversarial imitation (GAIL, AIRL)."""

import gymnasium as gym

from machina.nets.mlp import QNet, VNet


class DiscrimNet(QNet):
    """MLP discriminator: ``(obs, acs)`` -> logit ``(*lead, 1)``.

    ``sigmoid(logit)`` is the probability that a step is the expert's. Wrap it like a Q net
    to get ``discrim(obs, acs) -> (logits (B,), info)``::

        discrim = DeterministicSAVfunc(ob_space, ac_space, DiscrimNet(ob_space, ac_space))

    Discrete and MultiDiscrete actions enter one-hot encoded.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations, flattened on input.
    action_space : gymnasium.spaces.Box, Discrete or MultiDiscrete
        Actions as the policy stores them in ``acs``.
    h1, h2 : int
        Hidden layer sizes (ReLU).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.Space,
        h1: int = 32,
        h2: int = 32,
    ) -> None:
        super().__init__(observation_space, action_space, h1, h2)


class StateDiscrimNet(VNet):
    """MLP state-only net: ``obs`` -> ``(*lead, 1)``.

    A state-only GAIL discriminator (``state_only=True``), or one of AIRL's state functions:
    the reward ``g(s)`` (``rewf``) or the shaping potential ``h(s)`` (``shaping_vf``). Wrap it
    in ``DeterministicSVfunc(ob_space, net)``.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations, flattened on input.
    h1, h2 : int
        Hidden layer sizes (ReLU).
    """

    def __init__(self, observation_space: gym.spaces.Box, h1: int = 32, h2: int = 32) -> None:
        super().__init__(observation_space, h1, h2)
