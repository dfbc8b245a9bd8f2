"""Vanilla policy gradient (REINFORCE with a learned baseline; Williams, 1992)."""

from __future__ import annotations

from collections.abc import Iterator

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
from machina.utils.training import optimizer_step


def update_pol(pol: torch.nn.Module, optim_pol: torch.optim.Optimizer, batch: dict) -> float:
    """One policy-gradient step of ``pol`` on ``batch`` (``lf.pg``); returns the loss before it."""
    return optimizer_step(optim_pol, lf.pg(pol, batch), pol.parameters())


def update_vf(vf: torch.nn.Module, optim_vf: torch.optim.Optimizer, batch: dict) -> float:
    """One regression step of ``vf`` onto the batch's ``rets``; returns the loss before it."""
    return optimizer_step(optim_vf, lf.monte_carlo(vf, batch), vf.parameters())


def train(
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    optim_vf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    num_epi_per_seq: int = 1,
    ent_beta: float = 0.0,
    max_grad_norm: float | None = None,
    log_enable: bool = True,
    large_batch: bool = False,
) -> dict[str, list[float]]:
    """Step ``pol`` along ``E[grad log pi(a|s) * A]`` and regress ``vf`` onto ``rets``.

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``advs`` (``ef.compute_advs``) and ``rets``.
    large_batch : bool
        Each of the ``epoch`` steps takes the whole of ``traj`` as one batch
        (``batch_size`` is then unused).
    (other parameters as ``ppo_clip.train``)

    Notes
    -----
    machina 0.x's positional order ``(..., epoch, batch_size, large_batch, log_enable)`` is
    recognised by the bools in the places of ``num_epi_per_seq`` and ``ent_beta``.

    Returns
    -------
    dict
        ``PolLoss`` and ``VfLoss``: one float per minibatch.
    """
    if isinstance(num_epi_per_seq, bool):  # 0.x order: (..., batch_size, large_batch, log_enable)
        large_batch, num_epi_per_seq = num_epi_per_seq, 1
        if isinstance(ent_beta, bool):
            log_enable, ent_beta = ent_beta, 0.0
    check_traj(traj, ["advs", "rets", "acs"], "vpg")
    check_stochastic_pol(pol, reparam=False, fn_name="vpg.train")
    log(log_enable, "Optimizing...")
    pol_losses, vf_losses = [], []
    batches: Iterator[dict[str, torch.Tensor]]
    if large_batch:
        batches = (whole_batch(traj, [pol, vf]) for _ in range(epoch))
    else:
        batches = minibatches(traj, [pol, vf], batch_size, epoch, num_epi_per_seq)
    step = PolVfStep(pol, vf, optim_pol, optim_vf, max_grad_norm, "vpg")
    for batch in batches:
        pol_loss, vf_loss = step(
            batch, lf.pg(pol, batch, ent_beta), lambda b: lf.monte_carlo(vf, b)
        )
        pol_losses.append(pol_loss)
        vf_losses.append(vf_loss)
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, VfLoss=vf_losses)
