"""Vanilla policy gradient (REINFORCE with a learned baseline; Williams, 1992)."""

from __future__ import annotations

import torch

from machina import loss_functional as lf
from machina.algos._common import check_traj, log, minibatches, optimizer_step
from machina.traj import Traj


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
) -> dict[str, list[float]]:
    """Step ``pol`` along ``E[grad log pi(a|s) * A]`` and regress ``vf`` onto ``rets``.

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``advs`` (``ef.compute_advs``) and ``rets``.
    (other parameters as ``ppo_clip.train``)

    Returns
    -------
    dict
        ``PolLoss`` and ``VfLoss``: one float per minibatch.
    """
    check_traj(traj, ["advs", "rets", "acs"], "vpg")
    log(log_enable, "Optimizing...")
    pol_losses, vf_losses = [], []
    for batch in minibatches(traj, [pol, vf], batch_size, epoch, num_epi_per_seq):
        pol_loss = lf.pg(pol, batch, ent_beta)
        pol_losses.append(
            optimizer_step(
                optim_pol,
                pol_loss,
                pol.parameters(),
                max_grad_norm,
                name="vpg.train: pol_loss",
                batch=batch,
            )
        )
        vf_loss = lf.monte_carlo(vf, batch)
        vf_losses.append(
            optimizer_step(
                optim_vf,
                vf_loss,
                vf.parameters(),
                max_grad_norm,
                name="vpg.train: vf_loss",
                batch=batch,
            )
        )
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, VfLoss=vf_losses)
