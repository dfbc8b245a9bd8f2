"""Categorical policy for Discrete action spaces."""

from typing import cast

import gymnasium as gym
import torch
from torch import nn

from machina.pds.categorical_pd import CategoricalPd
from machina.pols.base import BasePol


class CategoricalPol(BasePol):
    """Categorical policy.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Discrete
        ``n`` actions; ``ac`` is in ``0..n-1``, ``ac_real`` adds the space's ``start``.
    net : torch.nn.Module
        ``net(obs) -> pi (B, n)`` probabilities; when recurrent
        ``net(obs, hs, h_masks) -> (pi (T, B, n), hs)``.
    rnn : bool
        Whether ``net`` is recurrent.
    normalize_ac : bool
        Accepted for the signature all policies share; discrete actions are never scaled.

    Notes
    -----
    ``ac`` is int64 ``(*lead,)``; ``a_i`` holds ``pi``.
    """

    action_space_types = (gym.spaces.Discrete,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        net: nn.Module,
        rnn: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn, normalize_ac=normalize_ac)
        self.pd = CategoricalPd()

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        n = int(cast(gym.spaces.Discrete, self.action_space).n)  # checked in __init__
        if len(outputs) != 1 or tuple(outputs[0].shape[-1:]) != (n,):
            raise self._net_output_error(f"probabilities pi (..., {n})", outputs)
        check_probe_probabilities(type(self).__name__, outputs[0])

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return dict(pi=outputs[0])

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.argmax(params["pi"], dim=-1)


def check_probe_probabilities(owner: str, pi: torch.Tensor) -> None:
    """Raise a ValueError naming ``net`` unless the construction probe's ``pi (..., n)`` are
    probabilities: non-negative, each row summing to 1 within the rounding of a softmax in
    ``pi``'s dtype. A net giving logits (no softmax) would otherwise be accepted, and the
    policy's argmax, llh and entropy silently wrong.

    Parameters
    ----------
    owner : str
        The policy's class name, for the message.
    pi : torch.Tensor
        The net's output on the probe's zero observation, ``(..., n)``.
    """
    pi = pi.detach()
    n = int(pi.shape[-1])
    rows = pi.reshape(-1, n)
    if pi.is_floating_point():
        # a softmax rounds each probability by at most about (n + 1) half-ulps relative (the
        # n - 1 additions of its denominator, the exp, the division): their float64 sum is
        # within that of 1, here with a factor 2 to spare. (NaN fails both comparisons.)
        tol = (n + 1) * torch.finfo(pi.dtype).eps
        sums = rows.double().sum(-1)
        good = (rows >= 0).all(-1) & ((sums - 1.0).abs() <= tol)
    else:
        good = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    if not bool(good.all()):
        bad = rows[int(torch.nonzero(~good)[0])]
        raise ValueError(
            f"net: {owner} needs a net returning probabilities pi (..., {n}), non-negative "
            "with each row summing to 1 (e.g. ending in torch.nn.Softmax(dim=-1), not "
            f"logits); on a zero observation it gave {bad.tolist()} (sum "
            f"{float(bad.double().sum())})"
        )
