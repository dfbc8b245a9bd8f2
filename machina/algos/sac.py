"""Soft actor-critic with twin Q functions and a learned temperature.

Haarnoja et al., 2018, "Soft Actor-Critic Algorithms and Applications" (arXiv:1812.05905).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from machina import loss_functional as lf
from machina.algos._common import check_feed_forward, check_sampling, check_traj, log
from machina.algos._common import check_stochastic_pol as _check_pol
from machina.traj import Traj
from machina.utils import batch_share
from machina.utils.spaces import default_target_entropy
from machina.utils.training import frozen, optimizer_step, polyak_update

#: what every off-policy algorithm reads from its batches
OFF_POLICY_KEYS = ("obs", "acs", "rews", "next_obs", "terms")


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
    tau: float,
    gamma: float,
    sampling: int = 1,
    reparam: bool = True,
    log_enable: bool = True,
    target_ent: float | None = None,
    max_grad_norm: float | None = None,
    transform_batch: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> dict:
    """Take ``epoch`` SAC gradient steps, each on a uniform random batch of ``traj``.

    Each step: regress every Q function onto the soft target from the target Q functions
    (:func:`machina.loss_functional.sac_targets`), then step the policy against the updated
    twin minimum, then the temperature toward ``target_ent``, then move the target Q
    functions toward the Q functions by ``tau``.

    Parameters
    ----------
    traj : Traj
        Replay memory of registered episodes with ``obs``, ``acs``, ``rews``, ``next_obs``
        and ``terms``, e.g. a ``Traj(max_steps=...)`` that ``add_traj`` fills each iteration.
    pol : torch.nn.Module
        Stochastic policy: a ``TanhGaussianPol`` (squashed, recommended) or a
        ``GaussianPol`` (clipped by the environment; see ``machina.loss_functional.sac``).
        Feed-forward.
    qfs, targ_qfs : sequence of torch.nn.Module
        Q functions (``DeterministicSAVfunc``) and their targets (``copy.deepcopy``), twins.
    log_alpha : torch.Tensor
        Scalar log temperature with ``requires_grad=True``; optimised by ``optim_alpha``.
    optim_pol, optim_alpha : torch.optim.Optimizer
        Optimisers of ``pol`` and ``[log_alpha]``.
    optim_qfs : torch.optim.Optimizer or sequence of them
        One per Q function, or one for all.
    epoch : int
        Number of gradient steps (e.g. the number of environment steps just sampled).
    batch_size : int
        Steps per batch, drawn uniformly with replacement.
    tau : float
        Polyak rate of the target Q functions.
    gamma : float
        Discount.
    sampling : int
        Actions drawn per state to estimate the expectations over the policy.
    reparam : bool
        Reparameterised policy gradient (else likelihood-ratio).
    log_enable : bool
        Log progress through ``machina.logger``.
    target_ent : float, optional
        Target entropy; default ``machina.utils.spaces.default_target_entropy``: ``-action_dim``
        for a Box.
    max_grad_norm : float, optional
        Gradient-norm clip of the policy's step and of the Q functions' step: the Q
        functions step together on their summed loss, so one norm covers all of them.
    transform_batch : callable, optional
        Applied to every batch (a dict of ``(batch_size, ...)`` tensors, a copy of the
        replay's rows) before the step, e.g. to relabel ``rews`` with a learned reward
        (:func:`machina.algos.diayn_sac.train`); returns the batch to train on.

    Returns
    -------
    dict
        ``PolLoss``, ``QfLoss`` (mean over the Q functions), ``AlphaLoss``: one float per
        step; ``Alpha`` and ``Entropy`` (estimated ``-E[log pi]``) after the last step.
    """
    return _train(
        traj, pol, qfs, targ_qfs, log_alpha, optim_pol, optim_qfs, optim_alpha, epoch,
        batch_size, tau, gamma, sampling, reparam, log_enable, target_ent, max_grad_norm,
        transform_batch, algo="sac",
    )  # fmt: skip


def _train(
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
    tau: float,
    gamma: float,
    sampling: int,
    reparam: bool,
    log_enable: bool,
    target_ent: float | None,
    max_grad_norm: float | None,
    transform_batch: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None,
    algo: str,
) -> dict:
    """:func:`train`'s steps, its checks and errors naming ``f"{algo}.train"`` (the algorithm
    built on it, e.g. ``"diayn_sac"``)."""
    fn = f"{algo}.train"
    check_traj(traj, OFF_POLICY_KEYS, algo)
    qfs, targ_qfs = list(qfs), list(targ_qfs)
    check_feed_forward(algo, pol=pol, qfs=qfs)
    _check_pol(pol, reparam, fn)
    check_sampling(sampling, fn)
    if target_ent is None:
        target_ent = default_target_entropy(pol.action_space)
    log(log_enable, "Optimizing...")
    pol_losses, qf_losses, alpha_losses = [], [], []
    qf_params = [p for qf in qfs for p in qf.parameters()]
    llh = None
    for batch in traj.random_batch(batch_size, epoch):
        if transform_batch is not None:
            batch = batch_share.keep_share(transform_batch(batch), batch)
        targets = lf.sac_targets(pol, targ_qfs, log_alpha, batch, gamma, sampling)
        qf_loss = sum(lf.q_regression(qf, batch, targets) for qf in qfs)
        qf_losses.append(
            optimizer_step(
                optim_qfs, qf_loss, qf_params, max_grad_norm, name=f"{fn}: qf_loss", batch=batch
            )
            / len(qfs)
        )
        with frozen(qfs):
            pol_loss, llh = lf.sac_pol(pol, qfs, log_alpha, batch, sampling, reparam)
            pol_losses.append(
                optimizer_step(
                    optim_pol,
                    pol_loss,
                    None,
                    max_grad_norm,
                    name=f"{fn}: pol_loss",
                    batch=batch,
                )
            )
        alpha_loss = lf.sac_alpha(log_alpha, llh, target_ent, batch)
        alpha_losses.append(
            optimizer_step(optim_alpha, alpha_loss, name=f"{fn}: alpha_loss", batch=batch)
        )
        polyak_update(targ_qfs, qfs, tau)
    log(log_enable, "Optimization finished!")
    # the last minibatch's, the whole of it under Traj(ddp=True) (every rank calls this)
    entropy = float(batch_share.whole_mean(-llh, batch)) if llh is not None else float("nan")
    return dict(
        PolLoss=pol_losses,
        QfLoss=qf_losses,
        AlphaLoss=alpha_losses,
        Alpha=float(torch.exp(log_alpha.detach())),
        Entropy=entropy,
    )
