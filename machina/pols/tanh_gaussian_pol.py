"""Tanh-squashed Gaussian policy (SAC's; Haarnoja et al., 2018, appendix C).

A ``GaussianPol`` clips its samples to the action bounds; this policy squashes them with tanh
instead, so that every action it takes has a density, the one SAC's entropy term needs.
"""

from __future__ import annotations

import gymnasium as gym
from torch import nn

from machina.pds.tanh_gaussian_pd import TanhGaussianPd
from machina.pols.gaussian_pol import GaussianPol


class TanhGaussianPol(GaussianPol):
    """Gaussian policy whose actions are squashed into the bounds by tanh (for SAC).

    Takes the same nets as ``GaussianPol`` (e.g. ``PolNet``): ``net(obs) -> (mean, log_std)``
    with ``mean`` in ``[-1, 1]``; ``mean`` is the deterministic action and the median of the
    sampled ones. Sampled actions are ``tanh(atanh(mean) + exp(log_std) * noise)``, in
    ``(-1, 1)``, scaled to ``[low, high]``; their distribution is :class:`TanhGaussianPd`.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)`` with finite bounds.
    net : torch.nn.Module
        As for ``GaussianPol``.
    rnn : bool
        Whether ``net`` is recurrent.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        rnn: bool = False,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=True)
        self.pd = TanhGaussianPd()
