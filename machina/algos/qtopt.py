"""QT-Opt: Q-learning over continuous actions with a cross-entropy-method argmax.

Kalashnikov et al., 2018, "QT-Opt: Scalable Deep Reinforcement Learning for Vision-Based
Robotic Manipulation" (arXiv:1806.10293).
"""

from __future__ import annotations

import gymnasium as gym
import torch

from machina.algos._common import check_feed_forward, check_traj, log
from machina.algos.sac import OFF_POLICY_KEYS
from machina.loss_functional.qtopt import LOSS_TYPES, clipped_double_bellman
from machina.traj import Traj
from machina.utils.training import optimizer_step, polyak_update
from machina.vfuncs import CEMDeterministicSAVfunc


def _net(qf: torch.nn.Module) -> torch.nn.Module:
    # Average the nets only: a CEM Q function carries search-bound buffers a plain one lacks.
    return getattr(qf, "net", qf)


def train(
    traj: Traj,
    qf: torch.nn.Module,
    lagged_qf: torch.nn.Module,
    targ_qf1: torch.nn.Module,
    targ_qf2: torch.nn.Module,
    optim_qf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    tau: float = 0.9999,
    gamma: float = 0.9,
    loss_type: str = "mse",
    log_enable: bool = True,
    max_grad_norm: float | None = None,
) -> dict:
    """Take ``epoch`` QT-Opt gradient steps, each on a uniform random batch of ``traj``.

    Each step regresses ``qf`` onto ``r + gamma * (1 - term) * min(targ_qf1, targ_qf2)`` at the
    action ``targ_qf1`` finds best by CEM (:func:`machina.loss_functional.qtopt.
    clipped_double_bellman`), then moves ``targ_qf1`` toward ``qf`` and ``targ_qf2`` toward
    ``lagged_qf`` by ``tau``. Refreshing ``lagged_qf`` (``lagged_qf.load_state_dict(
    qf.state_dict())`` every few thousand steps) is the caller's, as in the paper.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``.
    qf : torch.nn.Module
        Q function being trained (``DeterministicSAVfunc`` or ``CEMDeterministicSAVfunc``;
        the latter doubles as the acting policy's argmax through ``ArgmaxQfPol``).
    lagged_qf : torch.nn.Module
        Lagged copy of ``qf`` (same architecture), not trained here.
    targ_qf1 : torch.nn.Module
        Target of ``qf`` with ``max`` by CEM: a ``CEMDeterministicSAVfunc``.
    targ_qf2 : torch.nn.Module
        Target of ``lagged_qf``.
    optim_qf : torch.optim.Optimizer
        Optimiser of ``qf``.
    epoch : int
        Number of gradient steps.
    batch_size : int
        Steps per batch, drawn uniformly with replacement.
    tau : float
        Polyak rate of both targets. The default (machina 0.x's) is close to a copy every
        step; QT-Opt-style slow targets use e.g. 0.005.
    gamma : float
        Discount (default machina 0.x's).
    loss_type : {"mse", "bce"}
        Bellman loss; ``"bce"`` for Q values and rewards in ``[0, 1]``.
    log_enable : bool
        Log progress through ``machina.logger``.
    max_grad_norm : float, optional
        Gradient-norm clip of ``qf``.

    Returns
    -------
    dict
        ``QfLoss``: one float per step; ``grad_step``: the number of steps taken.
    """
    check_traj(traj, OFF_POLICY_KEYS, "qtopt")
    check_feed_forward("qtopt", qf=qf, lagged_qf=lagged_qf, targ_qf1=targ_qf1, targ_qf2=targ_qf2)
    if not callable(getattr(targ_qf1, "max", None)) or (
        isinstance(getattr(targ_qf1, "action_space", None), gym.spaces.Box)
        and not isinstance(targ_qf1, CEMDeterministicSAVfunc)
    ):
        raise ValueError(
            "qtopt.train: targ_qf1: needs a Q function with max(obs) (CEMDeterministicSAVfunc "
            f"for Box actions), got {type(targ_qf1).__name__}"
        )
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"qtopt.train: loss_type: expected one of {LOSS_TYPES}, got {loss_type!r}")
    log(log_enable, "Optimizing...")
    qf_losses = []
    for batch in traj.random_batch(batch_size, epoch):
        loss = clipped_double_bellman(qf, targ_qf1, targ_qf2, batch, gamma, loss_type)
        qf_losses.append(
            optimizer_step(
                optim_qf, loss, None, max_grad_norm, name="qtopt.train: qf_loss", batch=batch
            )
        )
        polyak_update([_net(targ_qf1), _net(targ_qf2)], [_net(qf), _net(lagged_qf)], tau)
    log(log_enable, "Optimization finished!")
    return dict(QfLoss=qf_losses, grad_step=len(qf_losses))
