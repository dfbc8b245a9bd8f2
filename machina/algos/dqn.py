"""Double deep Q-learning on discrete actions (van Hasselt et al., 2016, arXiv:1509.06461)."""

from __future__ import annotations

import torch

from machina import loss_functional as lf
from machina.algos._common import check_feed_forward, check_traj, log
from machina.algos.sac import OFF_POLICY_KEYS
from machina.traj import Traj
from machina.utils.training import optimizer_step, polyak_update


def train(
    traj: Traj,
    qf: torch.nn.Module,
    targ_qf: torch.nn.Module,
    optim_qf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    tau: float,
    gamma: float,
    log_enable: bool = True,
    huber: bool = True,
    max_grad_norm: float | None = 10.0,
) -> dict[str, list[float]]:
    """Take ``epoch`` double-DQN gradient steps, each on a uniform random batch of ``traj``.

    Each step regresses ``qf`` onto ``r + gamma * (1 - term) * targ_qf(s', argmax_a qf(s', a))``
    and moves ``targ_qf`` toward ``qf`` by ``tau`` (``tau=1`` with a small ``epoch`` gives the
    periodic hard update of the original DQN). Act with ``ArgmaxQfPol(..., qf, eps)``.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``.
    qf, targ_qf : torch.nn.Module
        Q function on a Discrete action space (``DeterministicSAVfunc``) and its target.
        Feed-forward.
    optim_qf : torch.optim.Optimizer
        Optimiser of ``qf``.
    epoch, batch_size, tau, gamma, log_enable
        As in ``ddpg.train``.
    huber : bool
        Huber loss (as DQN), else squared error.
    max_grad_norm : float, optional
        Gradient-norm clip (10, as stable-baselines3's DQN).

    Returns
    -------
    dict
        ``QfLoss``: one float per step.
    """
    check_traj(traj, OFF_POLICY_KEYS, "dqn")
    check_feed_forward("dqn", qf=qf)
    log(log_enable, "Optimizing...")
    qf_losses = []
    for batch in traj.random_batch(batch_size, epoch):
        qf_loss = lf.dqn(qf, targ_qf, batch, gamma, huber=huber)
        qf_losses.append(
            optimizer_step(
                optim_qf, qf_loss, None, max_grad_norm, name="dqn.train: qf_loss", batch=batch
            )
        )
        polyak_update(targ_qf, qf, tau)
    log(log_enable, "Optimization finished!")
    return dict(QfLoss=qf_losses)
