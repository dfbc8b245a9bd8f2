"""Multi-categorical policy for MultiDiscrete action spaces."""

from typing import cast

import gymnasium as gym
import torch
from torch import nn

from machina.pds.multi_categorical_pd import MultiCategoricalPd
from machina.pols.base import BasePol
from machina.pols.categorical_pol import check_probe_probabilities
from machina.utils.spaces import check_flat_space


class MultiCategoricalPol(BasePol):
    """Policy of ``k`` independent categorical sub-actions.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.MultiDiscrete
        One-dimensional ``nvec (k,)``; ``ac_real`` adds the space's ``start``.
    net : torch.nn.Module
        ``net(obs) -> pi (B, k, n)`` with ``n >= max(nvec)`` (padding classes at probability 0);
        when recurrent ``net(obs, hs, h_masks) -> (pi (T, B, k, n), hs)``.
    rnn : bool
        Whether ``net`` is recurrent.
    normalize_ac : bool
        Accepted for the signature all policies share; discrete actions are never scaled.

    Notes
    -----
    ``ac`` is int64 ``(*lead, k)``; ``a_i`` holds ``pi``.
    """

    action_space_types = (gym.spaces.MultiDiscrete,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.MultiDiscrete,
        net: nn.Module,
        rnn: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
        self.pd = MultiCategoricalPd()

    def _check_action_space(self, action_space: gym.Space) -> None:
        super()._check_action_space(action_space)
        check_flat_space("action_space", action_space, type(self).__name__)

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        nvec = cast(gym.spaces.MultiDiscrete, self.action_space).nvec  # checked in __init__
        k, n_max = len(nvec), int(nvec.max())
        what = f"probabilities pi (..., {k}, n) with n >= {n_max}"
        lead = 2 if self.rnn else 1
        if (
            len(outputs) != 1
            or outputs[0].ndim != lead + 2
            or outputs[0].shape[-2] != k
            or outputs[0].shape[-1] < n_max
        ):
            raise self._net_output_error(what, outputs)
        # classes past a dimension's nvec are no actions: drawn, they would leave the space
        pi = outputs[0].detach()
        classes = torch.arange(pi.shape[-1], device=pi.device)
        padding = classes >= torch.as_tensor(nvec, device=pi.device)[:, None]
        if bool((pi * padding).gt(0).any()):
            raise ValueError(
                f"net: {type(self).__name__} needs probability 0 on the padding classes "
                f"(class >= nvec={nvec.tolist()} of each dimension), got "
                f"{pi.masked_select(padding).max().item():.3g} on one; mask them, as "
                "machina.nets.PolNet's head does"
            )
        check_probe_probabilities(type(self).__name__, pi)

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return dict(pi=outputs[0])

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.argmax(params["pi"], dim=-1)
