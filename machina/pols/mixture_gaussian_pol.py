"""Mixture-of-Gaussians policy for Box action spaces (multi-modal actions)."""

import gymnasium as gym
import torch
from torch import nn

from machina.pds.mixture_gaussian_pd import MixtureGaussianPd
from machina.pols.base import BasePol, broadcasts_to
from machina.utils.spaces import check_flat_space
from machina.utils.tensors import detached_if_no_grad


class MixtureGaussianPol(BasePol):
    """Policy whose action distribution is a mixture of ``K`` diagonal Gaussians.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Box
        One-dimensional Box, ``(d,)``; finite bounds when ``normalize_ac``.
    net : torch.nn.Module
        ``net(obs) -> (pi (B, K), mean (B, K, d), log_std)`` with mixture weights ``pi``
        (probabilities) and ``log_std`` broadcastable to ``mean`` (e.g.
        ``machina.nets.mixture.MixturePolNet``); when recurrent
        ``net(obs, hs, h_masks) -> (pi, mean, log_std, hs)`` with leading ``(T, B)``. With
        ``normalize_ac`` the means should lie in ``[-1, 1]``.
    normalize_ac : bool
        Scale ``ac`` from ``[-1, 1]`` to ``[low, high]`` for the environment.
    rnn : bool
        Whether ``net`` is recurrent (after ``normalize_ac``: machina 0.x's fourth argument).

    Notes
    -----
    ``a_i`` holds ``pi``, ``mean`` and ``log_std`` (expanded to ``mean``'s shape). The
    deterministic action is the mean of the most probable component (the mixture's mode has
    no closed form).
    """

    action_space_types = (gym.spaces.Box,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        normalize_ac: bool = True,
        rnn: bool = False,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
        self.pd = MixtureGaussianPd()

    def _check_action_space(self, action_space: gym.Space) -> None:
        super()._check_action_space(action_space)
        check_flat_space("action_space", action_space, type(self).__name__)

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        dim = self.action_space.shape[0]
        what = f"(pi (..., K), mean (..., K, {dim}), log_std broadcastable to mean)"
        if len(outputs) != 3:
            raise self._net_output_error(what, outputs)
        pi, mean, log_std = outputs
        if mean.ndim != pi.ndim + 1 or tuple(mean.shape[-2:]) != (pi.shape[-1], dim):
            raise self._net_output_error(what, outputs)
        if not broadcasts_to(log_std.shape, mean.shape):
            raise self._net_output_error(what, outputs)

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        pi, mean, log_std = outputs
        return dict(pi=pi, mean=mean, log_std=detached_if_no_grad(log_std.expand_as(mean)))

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        pi, mean = params["pi"], params["mean"]
        index = torch.argmax(pi, dim=-1)[..., None, None].expand(*pi.shape[:-1], 1, mean.shape[-1])
        return torch.gather(mean, -2, index).squeeze(-2)
