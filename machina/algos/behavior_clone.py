"""Behaviour cloning: maximum likelihood of expert actions (Pomerleau, 1991)."""

from __future__ import annotations

import numbers

import torch

from machina.algos._common import (
    Batch,
    check_class_acs,
    check_traj,
    is_recurrent,
    log,
    minibatches,
    whole_batch,
)
from machina.loss_functional.imitation import log_likelihood
from machina.traj import Traj
from machina.utils import batch_share
from machina.utils.training import optimizer_step


def update_pol(
    pol: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    batch: Batch,
    max_grad_norm: float | None = None,
) -> float:
    """One step on ``lf.log_likelihood``; returns the loss."""
    return optimizer_step(
        optim_pol,
        log_likelihood(pol, batch),
        pol.parameters(),
        max_grad_norm,
        name="behavior_clone.update_pol: pol_loss",
        batch=batch,
    )


def train(
    expert_traj: Traj,
    pol: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    batch_size: int,
    epoch: int = 1,
    num_epi_per_seq: int = 1,
    max_grad_norm: float | None = None,
    log_enable: bool = False,
) -> dict[str, list[float]]:
    """Fit ``pol`` to the expert's actions for ``epoch`` passes over ``expert_traj``.

    Parameters
    ----------
    expert_traj : Traj
        Registered expert episodes with ``obs`` and ``acs`` (actions in the policy's space,
        as ``EpiSampler`` records them).
    pol : torch.nn.Module
        A machina policy; a recurrent one trains on whole-episode sequences; a deterministic
        one (``DeterministicPd``) on the squared error of its mean.
    optim_pol : torch.optim.Optimizer
        Optimiser of ``pol``.
    batch_size : int
        Steps per minibatch (sequences when recurrent). Above the expert steps held
        (feed-forward), one batch of all of them per epoch, as ``mpc.train_dm``: an expert
        dataset may be smaller than the batch size (machina 0.x's own behaviour-cloning test
        clones 200 steps with 256).
    epoch : int
        Passes over the data.
    num_epi_per_seq : int
        Episodes joined into one sequence, recurrent case.
    max_grad_norm : float or None
        Gradient-norm clip.
    log_enable : bool
        Log progress through ``machina.logger``.

    Returns
    -------
    dict
        ``PolLoss``: one float per minibatch.
    """
    check_traj(expert_traj, ["obs", "acs"], "behavior_clone", "expert_traj")
    check_class_acs(expert_traj, pol, "behavior_clone.train", "expert_traj")
    if not is_recurrent(pol) and isinstance(batch_size, numbers.Integral) and expert_traj.num_step:
        batch_size = min(batch_size, expert_traj.num_step)
    log(log_enable, "Optimizing...")
    pol_losses = [
        update_pol(pol, optim_pol, batch, max_grad_norm)
        for batch in minibatches(expert_traj, [pol], batch_size, epoch, num_epi_per_seq)
    ]
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses)


def test(expert_traj: Traj, pol: torch.nn.Module) -> dict[str, list[float]]:
    """``lf.log_likelihood`` of ``pol`` on all of ``expert_traj`` (held-out episodes), no update.

    Returns
    -------
    dict
        ``TestPolLoss``: a list of one float.
    """
    check_traj(expert_traj, ["obs", "acs"], "behavior_clone", "expert_traj")
    check_class_acs(expert_traj, pol, "behavior_clone.test", "expert_traj")
    with torch.no_grad():
        batch = whole_batch(expert_traj, [pol])
        loss = batch_share.rank_mean(log_likelihood(pol, batch), batch)  # all ranks' shares
    return dict(TestPolLoss=[float(loss)])
