"""Deep deterministic policy gradient (Lillicrap et al., 2016, arXiv:1509.02971)."""

from __future__ import annotations

import torch

from machina import loss_functional as lf
from machina.algos._common import check_feed_forward, check_traj, log
from machina.algos.sac import OFF_POLICY_KEYS
from machina.pols import BasePol
from machina.traj import Traj
from machina.utils.training import frozen, optimizer_step, polyak_update


def train(
    traj: Traj,
    pol: torch.nn.Module,
    qf: torch.nn.Module,
    targ_pol: torch.nn.Module,
    targ_qf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    optim_qf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    tau: float,
    gamma: float,
    log_enable: bool = True,
    max_grad_norm: float | None = None,
) -> dict[str, list[float]]:
    """Take ``epoch`` DDPG gradient steps, each on a uniform random batch of ``traj``.

    Each step: regress ``qf`` onto ``r + gamma * (1 - term) * targ_qf(s', targ_pol(s'))``,
    step ``pol`` along ``grad Q(s, pol(s))`` (noise-free actions), then move both targets
    toward their networks by ``tau``.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``.
    pol, targ_pol : torch.nn.Module
        Deterministic policy (``DeterministicActionNoisePol``) and its target
        (``copy.deepcopy``). Feed-forward.
    qf, targ_qf : torch.nn.Module
        Q function (``DeterministicSAVfunc``) and its target.
    optim_pol, optim_qf : torch.optim.Optimizer
        Their optimisers.
    epoch : int
        Number of gradient steps.
    batch_size : int
        Steps per batch, drawn uniformly with replacement.
    tau : float
        Polyak rate of the targets.
    gamma : float
        Discount.
    log_enable : bool
        Log progress through ``machina.logger``.
    max_grad_norm : float, optional
        Gradient-norm clip.

    Returns
    -------
    dict
        ``PolLoss`` and ``QfLoss``: one float per step.

    Notes
    -----
    machina 0.x's order ``(traj, pol, targ_pol, qf, targ_qf, ...)`` (also ``svg.train``'s
    and ``prioritized_ddpg.train``'s) works too: a policy in the place of ``qf`` and a
    non-policy in the place of ``targ_pol`` are read that way.
    """
    if isinstance(qf, BasePol) and not isinstance(targ_pol, BasePol):
        qf, targ_pol = targ_pol, qf
    check_traj(traj, OFF_POLICY_KEYS, "ddpg")
    check_feed_forward("ddpg", pol=pol, qf=qf)
    log(log_enable, "Optimizing...")
    pol_losses, qf_losses = [], []
    for batch in traj.random_batch(batch_size, epoch):
        targets = lf.ddpg_targets(targ_pol, targ_qf, batch, gamma)
        qf_loss = lf.q_regression(qf, batch, targets)
        qf_losses.append(
            optimizer_step(
                optim_qf, qf_loss, None, max_grad_norm, name="ddpg.train: qf_loss", batch=batch
            )
        )
        with frozen([qf]):
            pol_loss = lf.ddpg_pol(pol, qf, batch)
            pol_losses.append(
                optimizer_step(
                    optim_pol,
                    pol_loss,
                    None,
                    max_grad_norm,
                    name="ddpg.train: pol_loss",
                    batch=batch,
                )
            )
        polyak_update([targ_pol, targ_qf], [pol, qf], tau)
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, QfLoss=qf_losses)
