"""Stochastic value gradients: SVG(0) through a Q function, SVG(1) through a dynamics model.

Heess et al., 2015, "Learning Continuous Control Policies by Stochastic Value Gradients"
(arXiv:1510.09142).
"""

from __future__ import annotations

import torch

from machina.algos._common import check_feed_forward, check_sampling, check_traj, log
from machina.algos._common import check_stochastic_pol as _check_pol
from machina.algos.sac import OFF_POLICY_KEYS
from machina.loss_functional import svg as svg_lf
from machina.traj import Traj
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
    sampling: int = 1,
    log_enable: bool = True,
    max_grad_norm: float | None = None,
) -> dict[str, list[float]]:
    """Take ``epoch`` SVG(0) gradient steps, each on a uniform random batch of ``traj``.

    Each step: regress ``qf`` onto ``r + gamma * (1 - term) * E[targ_qf(s', a')]`` with
    ``a' ~ targ_pol(.|s')`` (:func:`machina.loss_functional.svg.bellman`), step ``pol`` along
    ``grad E[Q(s, a)]`` through reparameterised actions ``a ~ pol(.|s)``
    (:func:`machina.loss_functional.svg.ag`), then move both targets toward their networks by
    ``tau``.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``.
    pol, targ_pol : torch.nn.Module
        Reparameterisable stochastic policy (``TanhGaussianPol`` or ``GaussianPol``) and its
        target (``copy.deepcopy``). Feed-forward.
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
    sampling : int
        Actions drawn per state for both expectations.
    log_enable : bool
        Log progress through ``machina.logger``.
    max_grad_norm : float, optional
        Gradient-norm clip of every network.

    Returns
    -------
    dict
        ``PolLoss`` and ``QfLoss``: one float per step.
    """
    check_traj(traj, OFF_POLICY_KEYS, "svg")
    check_feed_forward("svg", pol=pol, qf=qf)
    _check_pol(pol, True, "svg.train")
    check_sampling(sampling, "svg.train")
    log(log_enable, "Optimizing...")
    pol_losses, qf_losses = [], []
    for batch in traj.random_batch(batch_size, epoch):
        qf_loss = svg_lf.bellman(qf, targ_qf, targ_pol, batch, gamma, sampling=sampling)
        qf_losses.append(
            optimizer_step(
                optim_qf, qf_loss, None, max_grad_norm, name="svg.train: qf_loss", batch=batch
            )
        )
        with frozen([qf]):
            pol_loss = svg_lf.ag(pol, qf, batch, sampling)
            pol_losses.append(
                optimizer_step(
                    optim_pol,
                    pol_loss,
                    None,
                    max_grad_norm,
                    name="svg.train: pol_loss",
                    batch=batch,
                )
            )
        polyak_update([targ_pol, targ_qf], [pol, qf], tau)
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, QfLoss=qf_losses)


def train_svg1(
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    targ_vf: torch.nn.Module,
    dm: torch.nn.Module,
    rew_fn: svg_lf.RewFn,
    optim_pol: torch.optim.Optimizer,
    optim_vf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    tau: float,
    gamma: float,
    sampling: int = 1,
    optim_dm: torch.optim.Optimizer | None = None,
    max_weight: float = 5.0,
    log_enable: bool = True,
    max_grad_norm: float | None = None,
) -> dict[str, list[float]]:
    """Take ``epoch`` SVG(1) gradient steps (with experience replay), each on a random batch.

    Each step: if ``optim_dm`` is given, regress the dynamics model onto ``s' - s``
    (:func:`machina.loss_functional.svg.delta_regression`); fit ``vf`` to the current policy
    by importance-weighted TD(0) against ``targ_vf`` (:func:`~machina.loss_functional.svg.
    svg1_vf`); step ``pol`` along ``grad E[r(s, a) + gamma * V(s + dm(s, a))]`` through
    reparameterised actions (:func:`~machina.loss_functional.svg.svg1_pol`); then move
    ``targ_vf`` toward ``vf`` by ``tau``.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs``, ``terms`` and the
        sampling policy's distribution parameters (``mean``, ``log_std``: ``EpiSampler``
        records them).
    pol : torch.nn.Module
        Reparameterisable stochastic policy (``TanhGaussianPol`` or ``GaussianPol``).
    vf, targ_vf : torch.nn.Module
        State value (``DeterministicSVfunc``) and its target (``copy.deepcopy``).
    dm : torch.nn.Module
        Dynamics model mapping ``(obs, acs)`` to ``next_obs - obs``, any ``nn.Module``
        (a tuple output is unpacked to its first element).
    rew_fn : callable
        ``rew_fn(obs, acs) -> rews``, differentiable in ``acs`` (policy-space actions) over
        leading dims ``(sampling, B)``: the task's known reward, or a learned reward net.
    optim_pol, optim_vf : torch.optim.Optimizer
        Optimisers of ``pol`` and ``vf``.
    epoch : int
        Number of gradient steps.
    batch_size : int
        Steps per batch, drawn uniformly with replacement.
    tau : float
        Polyak rate of ``targ_vf``.
    gamma : float
        Discount.
    sampling : int
        Actions drawn per state in the policy loss.
    optim_dm : torch.optim.Optimizer, optional
        Optimiser of ``dm``; None leaves the model as it is (trained elsewhere).
    max_weight : float
        Clip of the importance weights of the value loss.
    log_enable : bool
        Log progress through ``machina.logger``.
    max_grad_norm : float, optional
        Gradient-norm clip of every network.

    Returns
    -------
    dict
        ``PolLoss``, ``VfLoss`` and, when ``optim_dm`` is given, ``DmLoss``: one float per step.
    """
    check_traj(traj, OFF_POLICY_KEYS, "svg")
    check_feed_forward("svg", pol=pol, vf=vf, dm=dm)
    _check_pol(pol, True, "svg.train_svg1")
    check_sampling(sampling, "svg.train_svg1")
    if not callable(rew_fn):
        raise TypeError(
            f"svg.train_svg1: rew_fn: expected a callable (obs, acs) -> rews, got "
            f"{type(rew_fn).__name__}"
        )
    log(log_enable, "Optimizing...")
    pol_losses, vf_losses, dm_losses = [], [], []
    for batch in traj.random_batch(batch_size, epoch):
        if optim_dm is not None:
            dm_loss = svg_lf.delta_regression(dm, batch)
            dm_losses.append(
                optimizer_step(
                    optim_dm,
                    dm_loss,
                    None,
                    max_grad_norm,
                    name="svg.train_svg1: dm_loss",
                    batch=batch,
                )
            )
        vf_loss = svg_lf.svg1_vf(vf, targ_vf, pol, batch, gamma, max_weight)
        vf_losses.append(
            optimizer_step(
                optim_vf, vf_loss, None, max_grad_norm, name="svg.train_svg1: vf_loss", batch=batch
            )
        )
        # a learned reward net gets no gradient from the policy step either
        with frozen([vf, dm, *([rew_fn] if isinstance(rew_fn, torch.nn.Module) else [])]):
            pol_loss = svg_lf.svg1_pol(pol, vf, dm, rew_fn, batch, gamma, sampling)
            pol_losses.append(
                optimizer_step(
                    optim_pol,
                    pol_loss,
                    None,
                    max_grad_norm,
                    name="svg.train_svg1: pol_loss",
                    batch=batch,
                )
            )
        polyak_update(targ_vf, vf, tau)
    log(log_enable, "Optimization finished!")
    result = dict(PolLoss=pol_losses, VfLoss=vf_losses)
    if optim_dm is not None:
        result["DmLoss"] = dm_losses
    return result
