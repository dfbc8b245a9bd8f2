"""Tanh-squashed gSDE policy: SAC with state-dependent, temporally smooth exploration.

stable-baselines3's SAC with ``use_sde=True`` (rl-zoo's setting for the PyBullet tasks):
``ac = tanh(clip(mean(s)) + phi(s) @ E)``, the exploration matrix ``E`` kept for several
steps. See :class:`GaussianSDEPol` for the noise and :class:`TanhGaussianPol` for the squash.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pds.tanh_gaussian_pd import TanhGaussianPd
from machina.pols.base import ActResult
from machina.pols.gaussian_sde_pol import GaussianSDEPol
from machina.utils.recurrent import HiddenState


class TanhGaussianSDEPol(GaussianSDEPol):
    """gSDE policy whose actions are squashed into the bounds by tanh (for SAC).

    The net gives a pre-squash mean ``m(s) (d,)`` (clamped to ``[-clip_mean, clip_mean]``) and
    features ``phi(s) (k,)``; an acting call takes ``tanh(m(s) + phi(s) @ E)`` with the
    exploration matrix ``E (k, d)`` of :class:`GaussianSDEPol` (drawn from
    ``N(0, exp(log_std)^2)`` elementwise, kept for ``sample_freq`` acting calls), scaled to
    ``[low, high]``. Over the draws of ``E`` that action is ``tanh(u)`` with ``u`` Gaussian,
    independent per dim, of mean ``m(s)`` and variance ``phi(s)^2 @ exp(log_std)^2``: the
    policy's distribution is that :class:`TanhGaussianPd` (``a_i``: ``mean = tanh(m(s))``,
    the median and deterministic action, and the per-state ``log_std``). SAC's losses draw
    fresh actions from it, independently per sample, as for :class:`TanhGaussianPol`.
    Samplers act through its torch path (the numpy fast path knows ``GaussianSDEPol`` itself
    only); exported (``machina.export``), a stochastic action takes standard normal draws of
    that marginal before the squash.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)`` with finite bounds.
    net : torch.nn.Module
        ``net(obs) -> (mean (B, d), features (B, k))``, the mean before squashing, e.g.
        :class:`machina.nets.SDEPolNet`.
    log_std_init : float
        Initial value of every entry of the ``(k, d)`` log-std of the exploration matrix;
        -3 is stable-baselines3's default for SAC.
    sample_freq : int
        Draw a new exploration matrix every ``sample_freq`` acting calls; ``-1``: only on
        :meth:`reset_noise`. 8 matches rl-zoo's SAC on these tasks, whose matrix is redrawn
        at every collection of ``train_freq=8`` steps.
    learn_features : bool
        Let the log-likelihood's gradient reach the net through the features; True is
        stable-baselines3's choice for SAC (False, the paper's default, detaches them).
    per_env_noise : bool
        One exploration matrix per environment (see :class:`GaussianSDEPol`).
    clip_mean : float
        Bound on ``|m(s)|`` before squashing (stable-baselines3's ``clip_mean``, 2:
        ``tanh(2) = 0.964``): keeps the mean off tanh's flat tails where the noise could
        no longer move the action. At most 7: :class:`TanhGaussianPd` recovers the mean
        from its median ``tanh(m)``, which float32 rounds to 1 beyond ``|m| = 7.25``.
    """

    #: the largest ``clip_mean``: ``TanhGaussianPd``'s ``atanh(1 - EPS)`` is 7.25
    MAX_CLIP_MEAN = 7.0

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        log_std_init: float = -3.0,
        sample_freq: int = 8,
        learn_features: bool = True,
        per_env_noise: bool = False,
        clip_mean: float = 2.0,
    ) -> None:
        clip_mean = float(clip_mean)
        if not 0.0 < clip_mean <= self.MAX_CLIP_MEAN:
            raise ValueError(
                f"clip_mean: expected a bound in (0, {self.MAX_CLIP_MEAN}], got {clip_mean}"
            )
        self.clip_mean = clip_mean
        super().__init__(
            observation_space,
            action_space,
            net,
            log_std_init=log_std_init,
            sample_freq=sample_freq,
            learn_features=learn_features,
            normalize_ac=True,
            per_env_noise=per_env_noise,
        )
        self.pd = TanhGaussianPd()

    def _loc(self, mean: torch.Tensor) -> torch.Tensor:
        """The pre-squash mean, clamped (a zero gradient beyond the bound, as Hardtanh)."""
        return mean.clamp(-self.clip_mean, self.clip_mean)

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        mean, features = outputs
        params = super()._pd_params((self._loc(mean), features))
        params["mean"] = torch.tanh(params["mean"])
        return params

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        obs = self._obs_to_tensor(obs)
        outputs, _ = self._call_net(obs, hs, h_masks)
        params = self._pd_params(outputs)
        features = params.pop("features")
        if deterministic:
            ac = params["mean"]
        else:
            ac = torch.tanh(self._loc(outputs[0]) + self._noise(self._features(features)))
        return self._ac_real_numpy(ac.detach()), ac, params
