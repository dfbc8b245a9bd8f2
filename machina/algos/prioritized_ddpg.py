"""DDPG on prioritised experience replay (Schaul et al., 2016, arXiv:1511.05952).

DDPG (Lillicrap et al., 2016) whose batches are drawn by priority
(``Traj.prioritized_random_batch``), whose Q regression is weighted by the importance-sampling
weights, and whose drawn steps get their new TD errors as priorities
(``traj_functional.update_pris``). Optionally n-step targets (``ef.compute_nstep``).
"""

from __future__ import annotations

import math

import torch

from machina import loss_functional as lf
from machina.algos._common import check_feed_forward, check_traj, log
from machina.algos.sac import OFF_POLICY_KEYS
from machina.loss_functional import prioritized as lf_pri
from machina.traj import Traj
from machina.traj import traj_functional as tf
from machina.utils import batch_share
from machina.utils.training import frozen, optimizer_step, polyak_update


def train(
    traj: Traj,
    pol: torch.nn.Module,
    targ_pol: torch.nn.Module,
    qf: torch.nn.Module,
    targ_qf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    optim_qf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    tau: float,
    gamma: float,
    log_enable: bool = True,
    mode: str = "proportional",
    alpha: float = 0.6,
    init_beta: float = 0.4,
    beta_step: float = 0.00025 / 4,
    epsilon: float = 1e-6,
    nstep: bool = False,
    max_grad_norm: float | None = None,
) -> dict[str, list[float]]:
    """Take ``epoch`` DDPG gradient steps on prioritised batches of ``traj``.

    Each step: draw a batch by priority, regress ``qf`` onto the target with the batch's
    importance weights, write ``(|td| + epsilon) ** alpha`` back as the drawn steps'
    priorities, step ``pol`` along ``grad Q(s, pol(s))``, then move both targets by ``tau``.
    The argument order (``pol, targ_pol, qf, targ_qf``) is machina 0.x's.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs``, ``terms`` and ``pris``
        (``ef.set_all_pris(traj, off_traj.get_max_pri())`` on new episodes; ``add_traj``
        gives episodes without ``pris`` the maximum priority).
    pol, targ_pol : torch.nn.Module
        Deterministic policy (``DeterministicActionNoisePol``) and its target. Feed-forward.
    qf, targ_qf : torch.nn.Module
        Q function (``DeterministicSAVfunc``) and its target.
    optim_pol, optim_qf : torch.optim.Optimizer
        Their optimisers.
    epoch : int
        Number of gradient steps.
    batch_size : int
        Steps per batch.
    tau : float
        Polyak rate of the targets.
    gamma : float
        Discount of the one-step target (n-step targets carry their own discounts).
    log_enable : bool
        Log progress through ``machina.logger``.
    mode : {"proportional", "rank_based"}
        How priorities become probabilities (``Traj.prioritized_random_batch``).
    alpha : float
        Priority exponent: of the stored TD errors, and of ranks in rank-based mode.
    init_beta, beta_step : float
        Importance-weight exponent's start and increment per batch (annealed to 1).
    epsilon : float
        Added to ``|td|`` so that every step stays drawable.
    nstep : bool
        Use the n-step transitions of ``ef.compute_nstep`` instead of one-step targets.
    max_grad_norm : float, optional
        Gradient-norm clip.

    Returns
    -------
    dict
        ``PolLoss``, ``QfLoss``: one float per step; ``Beta``: the last batch's exponent
        (nan while traj has drawn no prioritised batch).
    """
    keys = (*OFF_POLICY_KEYS, "pris", *(lf_pri.NSTEP_KEYS if nstep else ()))
    check_traj(traj, keys, "prioritized_ddpg")
    check_feed_forward("prioritized_ddpg", pol=pol, qf=qf)
    log(log_enable, "Optimizing...")
    pol_losses, qf_losses = [], []
    batches = traj.prioritized_random_batch(
        batch_size, epoch, True, mode, alpha, init_beta, beta_step
    )
    for batch, indices in batches:
        if nstep:
            targets = lf_pri.ddpg_nstep_targets(targ_pol, targ_qf, batch)
        else:
            targets = lf.ddpg_targets(targ_pol, targ_qf, batch, gamma)
        qf_loss, td = lf_pri.weighted_q_regression(qf, batch, targets)
        qf_losses.append(
            optimizer_step(
                optim_qf,
                qf_loss,
                None,
                max_grad_norm,
                name="prioritized_ddpg.train: qf_loss",
                batch=batch,
            )
        )
        # every rank writes the whole minibatch's priorities (Traj(ddp=True): its share's TDs)
        td, indices = batch_share.gather(td, indices, batch=batch)
        tf.update_pris(traj, td, indices, alpha=alpha, epsilon=epsilon)
        with frozen([qf]):
            pol_loss = lf.ddpg_pol(pol, qf, batch)
            pol_losses.append(
                optimizer_step(
                    optim_pol,
                    pol_loss,
                    None,
                    max_grad_norm,
                    name="prioritized_ddpg.train: pol_loss",
                    batch=batch,
                )
            )
        polyak_update([targ_pol, targ_qf], [pol, qf], tau)
    log(log_enable, "Optimization finished!")
    beta = traj.pri_beta
    return dict(PolLoss=pol_losses, QfLoss=qf_losses, Beta=math.nan if beta is None else beta)
