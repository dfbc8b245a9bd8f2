"""Q-learning losses and targets (DDPG, TD3, double DQN) as pure functions of (modules, batch).

Batches are flat ``(B, ...)`` step batches from ``Traj.random_batch`` holding ``obs``, ``acs``,
``rews``, ``next_obs`` and ``terms``. Targets bootstrap from the true next observation unless
the step *terminated*: a step cut by a time limit (``truncs``) is not an end of the task, so its
target still bootstraps from ``next_obs`` (the real final observation, which ``EpiSampler``
records). ``dones`` is never used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from machina.loss_functional._common import Batch, mean_loss
from machina.utils import batch_share


def bellman_target(
    rews: torch.Tensor, terms: torch.Tensor, next_vs: torch.Tensor, gamma: float
) -> torch.Tensor:
    """One-step target ``rews + gamma * (1 - terms) * next_vs``.

    Parameters
    ----------
    rews : torch.Tensor
        ``(B,)`` rewards.
    terms : torch.Tensor
        ``(B,)`` bool or float, 1 where the step terminated (not merely truncated).
    next_vs : torch.Tensor
        ``(B,)`` value of ``next_obs`` (e.g. a target Q at the next action).
    gamma : float
        Discount.

    Returns
    -------
    torch.Tensor
        ``(B,)`` targets, in ``next_vs``'s dtype.
    """
    if rews.shape != next_vs.shape or terms.shape != next_vs.shape:
        raise ValueError(
            f"bellman_target: rews, terms and next_vs must have one shape, got "
            f"{tuple(rews.shape)}, {tuple(terms.shape)} and {tuple(next_vs.shape)}"
        )
    not_term = 1.0 - terms.to(next_vs.dtype)
    return rews.to(next_vs.dtype) + gamma * not_term * next_vs


def q_regression(
    qf: torch.nn.Module, batch: Batch, targets: torch.Tensor, huber: bool = False
) -> torch.Tensor:
    """Regression of ``Q(obs, acs)`` onto ``targets``: ``0.5 * E[(Q - y)^2]``, or Huber.

    Parameters
    ----------
    qf : torch.nn.Module
        A state-action value function, ``qf(obs, acs) -> (qs (B,), info)``.
    batch : dict of str to torch.Tensor
        ``obs`` and ``acs``.
    targets : torch.Tensor
        ``(B,)``, without gradient.
    huber : bool
        Huber loss with threshold 1 (``smooth_l1_loss``) instead of the squared error.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    qs = qf(batch["obs"], batch["acs"])[0]
    if huber:
        return mean_loss(torch.nn.functional.smooth_l1_loss, qs, targets, batch=batch)
    return 0.5 * batch_share.share_mean((qs - targets) ** 2, batch)


def _mean_acs(pol: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The deterministic policy's action ``(B, d)``, without exploration noise."""
    return pol.pd_params(obs)["mean"]


def _clip_ac(pol: torch.nn.Module, acs: torch.Tensor) -> torch.Tensor:
    clip = getattr(pol, "clip_ac", None)
    if clip is not None:
        return clip(acs)
    return acs.clamp(-1.0, 1.0) if getattr(pol, "normalize_ac", True) else acs


def ddpg_targets(
    targ_pol: torch.nn.Module, targ_qf: torch.nn.Module, batch: Batch, gamma: float
) -> torch.Tensor:
    """DDPG's target ``r + gamma * (1 - term) * Q'(s', mu'(s'))``, ``(B,)`` without gradient."""
    with torch.no_grad():
        next_obs = batch["next_obs"]
        next_qs = targ_qf(next_obs, _mean_acs(targ_pol, next_obs))[0]
        return bellman_target(batch["rews"], batch["terms"], next_qs, gamma)


def td3_targets(
    targ_pol: torch.nn.Module,
    targ_qfs: Sequence[torch.nn.Module],
    batch: Batch,
    gamma: float,
    target_noise: float = 0.2,
    target_noise_clip: float = 0.5,
) -> torch.Tensor:
    """TD3's clipped double-Q target with target policy smoothing (Fujimoto et al., 2018).

    ``a' = clip(mu'(s') + clip(N(0, target_noise^2), ±target_noise_clip))`` in the policy's
    action space, then ``r + gamma * (1 - term) * min_i Q'_i(s', a')``. Returns ``(B,)``
    without gradient.
    """
    with torch.no_grad(), batch_share.drawing_for(batch):
        next_obs = batch["next_obs"]
        mean = _mean_acs(targ_pol, next_obs)
        noise = batch_share.randn_like(mean) * target_noise
        noise = noise.clamp(-target_noise_clip, target_noise_clip)
        next_acs = _clip_ac(targ_pol, mean + noise)
        next_qs = torch.stack([qf(next_obs, next_acs)[0] for qf in targ_qfs]).min(dim=0).values
        return bellman_target(batch["rews"], batch["terms"], next_qs, gamma)


def ddpg_pol(pol: torch.nn.Module, qf: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Deterministic policy gradient loss ``-E[Q(s, mu(s))]`` (DDPG, TD3), a scalar."""
    obs = batch["obs"]
    return -batch_share.share_mean(qf(obs, _mean_acs(pol, obs))[0], batch)


def dqn_targets(
    qf: torch.nn.Module, targ_qf: torch.nn.Module, batch: Batch, gamma: float
) -> torch.Tensor:
    """Double DQN's target (van Hasselt et al., 2016), ``(B,)`` without gradient.

    The online ``qf`` picks ``a* = argmax_a Q(s', a)``, the target net evaluates it:
    ``r + gamma * (1 - term) * Q'(s', a*)``.
    """
    with torch.no_grad():
        next_obs = batch["next_obs"]
        _, next_acs = qf.max(next_obs)
        next_qs = targ_qf(next_obs, next_acs)[0]
        return bellman_target(batch["rews"], batch["terms"], next_qs, gamma)


def dqn(
    qf: torch.nn.Module,
    targ_qf: torch.nn.Module,
    batch: Batch,
    gamma: float,
    huber: bool = True,
) -> torch.Tensor:
    """Double DQN loss: Huber (or squared) error to :func:`dqn_targets`, a scalar."""
    return q_regression(qf, batch, dqn_targets(qf, targ_qf, batch, gamma), huber=huber)
