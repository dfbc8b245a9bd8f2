"""Gaussian policy for Box action spaces."""

import gymnasium as gym
import torch
from torch import nn

from machina.pds.gaussian_pd import GaussianPd
from machina.pols.base import BasePol, broadcasts_to
from machina.utils.spaces import check_flat_space, space_shape
from machina.utils.tensors import detached_if_no_grad


class GaussianPol(BasePol):
    """Diagonal Gaussian policy.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Box
        One-dimensional Box, ``(d,)``; finite bounds when ``normalize_ac``.
    net : torch.nn.Module
        ``net(obs) -> (mean (B, d), log_std)`` with ``log_std`` broadcastable to ``mean``; when
        recurrent ``net(obs, hs, h_masks) -> (mean (T, B, d), log_std, hs)``. With
        ``normalize_ac`` ``[-1, 1]`` maps onto the bounds: a mean through ``tanh`` stays inside,
        a linear one (``PolNet(squash_mean=False)``) has its actions clipped to the bounds.
    rnn : bool
        Whether ``net`` is recurrent.
    normalize_ac : bool
        Scale ``ac`` from ``[-1, 1]`` to ``[low, high]`` for the environment.

    Notes
    -----
    ``a_i`` holds ``mean`` and ``log_std`` (expanded to ``mean``'s shape).
    """

    action_space_types = (gym.spaces.Box,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        rnn: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
        self.pd = GaussianPd()

    def _check_action_space(self, action_space: gym.Space) -> None:
        super()._check_action_space(action_space)
        check_flat_space("action_space", action_space, type(self).__name__)

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        dim = space_shape("action_space", self.action_space)[0]
        what = f"(mean (..., {dim}), log_std broadcastable to mean)"
        if len(outputs) != 2 or tuple(outputs[0].shape[-1:]) != (dim,):
            raise self._net_output_error(what, outputs)
        if not broadcasts_to(outputs[1].shape, outputs[0].shape):
            raise self._net_output_error(what, outputs)

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        mean, log_std = outputs
        return dict(mean=mean, log_std=detached_if_no_grad(log_std.expand_as(mean)))

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["mean"]
