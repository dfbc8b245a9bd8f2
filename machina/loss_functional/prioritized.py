"""Losses for prioritised replay: importance-weighted Q regression and n-step DDPG targets.

Batches come from ``Traj.prioritized_random_batch`` and carry ``is_weights`` (B,), the
importance-sampling weights that undo the bias of drawing by priority (Schaul et al., 2016).
"""

from __future__ import annotations

import torch

from machina.loss_functional._common import Batch
from machina.utils import batch_share

NSTEP_KEYS = ("nstep_rews", "nstep_next_obs", "nstep_discounts")


def weighted_q_regression(
    qf: torch.nn.Module, batch: Batch, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``0.5 * E[w (Q(obs, acs) - y)^2]`` with ``w = batch["is_weights"]`` (1 when absent).

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    td : torch.Tensor
        ``(B,)`` TD errors ``Q - y``, detached: the new priorities of the drawn steps.
    """
    qs = qf(batch["obs"], batch["acs"])[0]
    td = qs - targets
    weights = batch.get("is_weights")
    sq = td**2 if weights is None else weights.to(td.dtype) * td**2
    return 0.5 * batch_share.share_mean(sq, batch), td.detach()


def nstep_target(
    nstep_rews: torch.Tensor, nstep_discounts: torch.Tensor, next_vs: torch.Tensor
) -> torch.Tensor:
    """n-step target ``nstep_rews + nstep_discounts * next_vs``, each ``(B,)``.

    ``nstep_discounts`` (from ``ef.compute_nstep``) is ``gamma ** k``, or 0 after a
    termination, so the bootstrap stops at true ends only.
    """
    if nstep_rews.shape != next_vs.shape or nstep_discounts.shape != next_vs.shape:
        raise ValueError(
            f"nstep_target: nstep_rews, nstep_discounts and next_vs must have one shape, got "
            f"{tuple(nstep_rews.shape)}, {tuple(nstep_discounts.shape)} and "
            f"{tuple(next_vs.shape)}"
        )
    return nstep_rews.to(next_vs.dtype) + nstep_discounts.to(next_vs.dtype) * next_vs


def ddpg_nstep_targets(targ_pol: torch.nn.Module, targ_qf: torch.nn.Module, batch: Batch):
    """DDPG's n-step target ``R_n + gamma^k (1 - term) Q'(s_{t+k}, mu'(s_{t+k}))``, ``(B,)``.

    Reads ``nstep_rews``, ``nstep_next_obs`` and ``nstep_discounts`` (``ef.compute_nstep``);
    without gradient.
    """
    with torch.no_grad():
        next_obs = batch["nstep_next_obs"]
        next_qs = targ_qf(next_obs, targ_pol.pd_params(next_obs)["mean"])[0]
        return nstep_target(batch["nstep_rews"], batch["nstep_discounts"], next_qs)
