"""Recurrent soft actor-critic on prioritised sequence replay (R2D2's recipe for SAC).

R2D2: Kapturowski et al., 2019, "Recurrent Experience Replay in Distributed Reinforcement
Learning" (openreview r1lyTjAqYX); SAC: Haarnoja et al., 2018 (arXiv:1812.05905).
Windows of ``seq_length`` steps are drawn by sequence priority
(``Traj.prioritized_random_batch_rnn``); the recurrent policy and Q functions run over them
from a zero state, warmed up for ``burn_in_length`` steps; the Q regression is importance
weighted; the trained steps' TD errors become their priorities and the windows holding them are
re-scored (``traj_functional.update_pris(..., update_epi_pris=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from machina.algos._common import check_sampling, check_traj, log
from machina.algos._common import check_stochastic_pol as _check_pol
from machina.algos.sac import OFF_POLICY_KEYS
from machina.loss_functional import r2d2_sac as lf_r2d2
from machina.traj import Traj
from machina.traj import traj_functional as tf
from machina.utils import batch_share
from machina.utils.spaces import default_target_entropy
from machina.utils.training import frozen, optimizer_step, polyak_update


def _check_recurrent(
    pol: torch.nn.Module, qfs: Sequence[torch.nn.Module], targ_qfs: Sequence[torch.nn.Module]
) -> None:
    named = [("pol", pol)]
    named += [(f"qfs[{i}]", qf) for i, qf in enumerate(qfs)]
    named += [(f"targ_qfs[{i}]", qf) for i, qf in enumerate(targ_qfs)]
    for name, module in named:
        if not getattr(module, "rnn", False):
            raise ValueError(
                f"r2d2_sac.train: {name}: expected a recurrent module (rnn=True, e.g. an LSTM "
                f"net), got {type(module).__name__} with rnn=False; use sac.train for "
                "feed-forward ones"
            )


def train(
    traj: Traj,
    pol: torch.nn.Module,
    qfs: Sequence[torch.nn.Module],
    targ_qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    optim_pol: torch.optim.Optimizer,
    optim_qfs: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    optim_alpha: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    seq_length: int,
    burn_in_length: int,
    tau: float,
    gamma: float,
    sampling: int = 1,
    reparam: bool = True,
    log_enable: bool = True,
    mode: str = "proportional",
    pri_alpha: float = 0.6,
    eta: float = 0.9,
    init_beta: float = 0.4,
    beta_step: float = 0.00025 / 4,
    epsilon: float = 1e-6,
    target_ent: float | None = None,
    max_grad_norm: float | None = None,
) -> dict:
    """Take ``epoch`` recurrent SAC gradient steps on prioritised windows of ``traj``.

    Each step: draw ``batch_size`` windows by ``seq_pris``; regress every Q function onto
    the soft target (importance weighted, burn-in steps left out), write the TD errors back as
    priorities, step the policy against the updated twin minimum, then the temperature, then
    move the target Q functions by ``tau``.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs``, ``terms``, ``pris`` and
        ``seq_pris`` computed for ``seq_length`` (``ef.set_all_pris`` then
        ``ef.compute_seq_pris(traj, seq_length)`` on new episodes).
    pol : torch.nn.Module
        Recurrent stochastic policy (``TanhGaussianPol(..., PolNetLSTM(...), rnn=True)``).
    qfs, targ_qfs : sequence of torch.nn.Module
        Recurrent Q functions and their targets; the recurrent state must not depend on the
        action (see ``machina.loss_functional.r2d2_sac``).
    log_alpha : torch.Tensor
        Scalar log temperature with ``requires_grad=True``.
    optim_pol, optim_qfs, optim_alpha : torch.optim.Optimizer
        As for ``sac.train``.
    epoch : int
        Number of gradient steps.
    batch_size : int
        Windows per batch.
    seq_length : int
        Window length L (burn-in included).
    burn_in_length : int
        Leading steps of a window that only warm up the recurrent state, in ``[0, L)``.
    tau, gamma : float
        Polyak rate of the targets, discount.
    sampling : int
        Actions drawn per step for the expectations over the policy.
    reparam : bool
        Reparameterised policy gradient (else likelihood-ratio).
    log_enable : bool
        Log progress through ``machina.logger``.
    mode : {"proportional", "rank_based"}
        How sequence priorities become probabilities.
    pri_alpha, epsilon : float
        Priorities are ``(|td| + epsilon) ** pri_alpha``.
    eta : float
        A window's priority is ``eta * max + (1 - eta) * mean`` of its steps'.
    init_beta, beta_step : float
        Importance-weight exponent's start and increment per batch (annealed to 1).
    target_ent : float, optional
        Target entropy; default ``machina.utils.spaces.default_target_entropy``: ``-action_dim``
        for a Box.
    max_grad_norm : float, optional
        Gradient-norm clip of every network.

    Returns
    -------
    dict
        ``PolLoss``, ``QfLoss`` (mean over the Q functions), ``AlphaLoss``: one float per
        step; ``Alpha``, ``Entropy`` and ``Beta`` after the last step (Entropy nan without a
        step, Beta nan while traj has drawn no prioritised batch).
    """
    check_traj(traj, (*OFF_POLICY_KEYS, "pris", "seq_pris"), "r2d2_sac")
    qfs, targ_qfs = list(qfs), list(targ_qfs)
    _check_recurrent(pol, qfs, targ_qfs)
    _check_pol(pol, reparam, "r2d2_sac.train")
    check_sampling(sampling, "r2d2_sac.train")
    if not 0 <= burn_in_length < seq_length:
        raise ValueError(
            f"r2d2_sac.train: burn_in_length: expected an int in [0, seq_length={seq_length}), "
            f"got {burn_in_length!r}"
        )
    if target_ent is None:
        target_ent = default_target_entropy(pol.action_space)
    log(log_enable, "Optimizing...")
    pol_losses, qf_losses, alpha_losses = [], [], []
    qf_params = [p for qf in qfs for p in qf.parameters()]
    llh, masks = None, None
    batches = traj.prioritized_random_batch_rnn(
        batch_size, seq_length, epoch, True, mode, pri_alpha, init_beta, beta_step
    )
    for batch, starts in batches:
        masks = lf_r2d2.train_masks(batch, burn_in_length)
        targets = lf_r2d2.r2d2_sac_targets(
            pol, targ_qfs, log_alpha, batch, gamma, burn_in_length, sampling
        )
        qf_loss, td = lf_r2d2.r2d2_q_loss(qfs, batch, targets, masks, burn_in_length)
        qf_losses.append(
            optimizer_step(
                optim_qfs,
                qf_loss,
                qf_params,
                max_grad_norm,
                name="r2d2_sac.train: qf_loss",
                batch=batch,
            )
            / len(qfs)
        )
        trained = masks > 0
        steps = starts[None, :] + torch.arange(seq_length, device=starts.device)[:, None]
        # every rank writes the whole minibatch's priorities, in the single process's order
        td, steps, trained = batch_share.gather(td, steps, trained, batch=batch)
        tf.update_pris(traj, td[trained], steps[trained], pri_alpha, epsilon, True, seq_length, eta)
        with frozen(qfs):
            pol_loss, llh = lf_r2d2.r2d2_sac_pol(
                pol, qfs, log_alpha, batch, masks, burn_in_length, sampling, reparam
            )
            pol_losses.append(
                optimizer_step(
                    optim_pol,
                    pol_loss,
                    None,
                    max_grad_norm,
                    name="r2d2_sac.train: pol_loss",
                    batch=batch,
                )
            )
        alpha_loss = lf_r2d2.r2d2_sac_alpha(log_alpha, llh, masks, target_ent, batch)
        alpha_losses.append(
            optimizer_step(optim_alpha, alpha_loss, name="r2d2_sac.train: alpha_loss", batch=batch)
        )
        polyak_update(targ_qfs, qfs, tau)
    # the policy's stored hidden state now belongs to the last batch: start sampling afresh
    pol.reset()
    log(log_enable, "Optimization finished!")
    entropy = float("nan")
    if llh is not None:  # the last minibatch's (all of it under Traj(ddp=True))
        entropy = float(batch_share.whole_mean(-llh.mean(0)[masks > 0], batch))
    return dict(
        PolLoss=pol_losses,
        QfLoss=qf_losses,
        AlphaLoss=alpha_losses,
        Alpha=float(torch.exp(log_alpha.detach())),
        Entropy=entropy,
        Beta=math.nan if traj.pri_beta is None else traj.pri_beta,
    )
