"""Proximal policy optimisation with an adaptive KL penalty (Schulman et al., 2017)."""

from __future__ import annotations

import torch

from machina import loss_functional as lf
from machina.algos._common import (
    PolVfStep,
    check_stochastic_pol,
    check_traj,
    log,
    minibatches,
    whole_batch,
)
from machina.traj import Traj
from machina.utils import batch_share
from machina.utils.distributed import average_tensor
from machina.utils.training import optimizer_step


def update_pol(
    pol: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    batch: dict,
    kl_beta: float,
    max_grad_norm: float | None,
    ent_beta: float = 0.0,
) -> float:
    """One step of ``pol`` on the KL-penalised surrogate of ``batch`` (``lf.pg_kl``).

    Returns the loss before the step.
    """
    loss = lf.pg_kl(pol, batch, kl_beta, ent_beta)
    return optimizer_step(optim_pol, loss, pol.parameters(), max_grad_norm)


def update_vf(vf: torch.nn.Module, optim_vf: torch.optim.Optimizer, batch: dict) -> float:
    """One regression step of ``vf`` onto the batch's ``rets``; returns the loss before it."""
    return optimizer_step(optim_vf, lf.monte_carlo(vf, batch), vf.parameters())


def train(
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    kl_beta: float,
    kl_targ: float,
    optim_pol: torch.optim.Optimizer,
    optim_vf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    max_grad_norm: float | None = None,
    num_epi_per_seq: int = 1,
    ent_beta: float = 0.0,
    log_enable: bool = True,
    minibatch_norm_advs: bool = False,
) -> dict:
    """Minimise ``-E[ratio * A] + kl_beta * KL`` and adapt ``kl_beta`` toward ``kl_targ``.

    After the update the mean KL from the sampling policy is measured on all of ``traj``:
    above ``1.3 * kl_targ`` the coefficient is multiplied by 1.5, below ``0.7 * kl_targ``
    divided by 1.5 (machina 0.x's rule).

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``advs``, ``rets`` and the sampling policy's parameters.
    kl_beta : float
        Current KL coefficient; pass the returned ``new_kl_beta`` to the next call.
    kl_targ : float
        Target KL per update.
    max_grad_norm : float, optional
        Clip of the policy's gradient norm; the value function's is not clipped (as in
        machina 0.x and ``update_vf``).
    (other parameters as ``ppo_clip.train``)

    Returns
    -------
    dict
        ``PolLoss``, ``VfLoss`` (per minibatch), ``new_kl_beta`` and ``kl_mean`` (floats).
    """
    check_traj(traj, ["advs", "rets", "acs"], "ppo_kl")
    check_stochastic_pol(pol, reparam=False, fn_name="ppo_kl.train")
    log(log_enable, "Optimizing...")
    pol_losses, vf_losses = [], []
    batches = minibatches(
        traj, [pol, vf], batch_size, epoch, num_epi_per_seq, norm_advs=minibatch_norm_advs
    )
    step = PolVfStep(pol, vf, optim_pol, optim_vf, max_grad_norm, "ppo_kl", clip_vf=False)
    for batch in batches:
        pol_loss, vf_loss = step(
            batch, lf.pg_kl(pol, batch, kl_beta, ent_beta), lambda b: lf.monte_carlo(vf, b)
        )
        pol_losses.append(pol_loss)
        vf_losses.append(vf_loss)
    with torch.no_grad():
        whole = whole_batch(traj, [pol])  # recurrent under Traj(ddp=True): this rank's share
        kl = batch_share.rank_mean(lf.kl_old_new(pol, whole), whole)
        if not batch_share.splits(whole):
            # each rank on its own data, gradients averaged: the KL too, so that every rank
            # keeps the same coefficient (no-op in one process)
            kl = average_tensor(kl.to(torch.float64), (optim_pol,))
        kl_mean = float(kl)
    if kl_mean > 1.3 * kl_targ:
        new_kl_beta = 1.5 * kl_beta
    elif kl_mean < 0.7 * kl_targ:
        new_kl_beta = kl_beta / 1.5
    else:
        new_kl_beta = kl_beta
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, VfLoss=vf_losses, new_kl_beta=new_kl_beta, kl_mean=kl_mean)
