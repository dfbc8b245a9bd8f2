"""Proximal policy optimisation with the clipped surrogate (Schulman et al., 2017)."""

from __future__ import annotations

import torch

from machina import loss_functional as lf
from machina.algos._common import PolVfStep, check_stochastic_pol, check_traj, log, minibatches
from machina.traj import Traj
from machina.utils.training import optimizer_params, optimizer_step


def update_pol(
    pol: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    batch: dict,
    clip_param: float,
    ent_beta: float,
    max_grad_norm: float | None,
) -> float:
    """One step of ``pol`` on the clipped surrogate of ``batch`` (``lf.pg_clip``).

    Returns the loss before the step.
    """
    loss = lf.pg_clip(pol, batch, clip_param, ent_beta)
    return optimizer_step(optim_pol, loss, pol.parameters(), max_grad_norm)


def update_vf(
    vf: torch.nn.Module,
    optim_vf: torch.optim.Optimizer,
    batch: dict,
    clip_param: float,
    clip: bool,
    max_grad_norm: float | None,
) -> float:
    """One regression step of ``vf`` onto ``rets``, clipped around ``vs`` when ``clip``.

    Returns the loss before the step.
    """
    loss = lf.monte_carlo(vf, batch, clip_param, clip)
    return optimizer_step(optim_vf, loss, vf.parameters(), max_grad_norm)


def make_optims(
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    pol_lr: float,
    vf_lr: float,
    joint_step: bool = False,
    eps: float = 1e-8,
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam optimisers for ``train``: ``(optim_pol, optim_vf)``.

    With ``joint_step`` one Adam over both networks' parameters at ``pol_lr`` (``vf_lr``
    unused), returned twice, as ``train(..., joint_step=True)`` needs; otherwise one per
    network. Fused: one kernel per step instead of a loop over parameters.
    """
    if joint_step:
        optim = torch.optim.Adam([*pol.parameters(), *vf.parameters()], pol_lr, eps=eps, fused=True)
        return optim, optim
    return (
        torch.optim.Adam(pol.parameters(), pol_lr, eps=eps, fused=True),
        torch.optim.Adam(vf.parameters(), vf_lr, eps=eps, fused=True),
    )


def train(
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    optim_vf: torch.optim.Optimizer,
    epoch: int,
    batch_size: int,
    num_epi_per_seq: int = 1,
    clip_param: float = 0.2,
    ent_beta: float = 1e-3,
    max_grad_norm: float | None = 0.5,
    clip_vfunc: bool = False,
    log_enable: bool = True,
    minibatch_norm_advs: bool = False,
    joint_step: bool = False,
) -> dict[str, list[float]]:
    """Update ``pol`` and ``vf`` for ``epoch`` passes over ``traj`` in minibatches.

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``advs`` (``ef.compute_advs``), ``rets``
        (``ef.compute_rets``) and the sampling policy's distribution parameters.
    pol, vf : torch.nn.Module
        Policy and state-value function; recurrent ones train on whole-episode sequences.
    optim_pol, optim_vf : torch.optim.Optimizer
        Their optimisers.
    epoch : int
        Passes over the data.
    batch_size : int
        Steps per minibatch (sequences per minibatch when recurrent).
    num_epi_per_seq : int
        Episodes joined into one sequence, recurrent case.
    clip_param : float
        Ratio clipping range.
    ent_beta : float
        Entropy bonus coefficient.
    max_grad_norm : float or None
        Gradient-norm clip for both networks.
    clip_vfunc : bool
        Clip the value update around ``vs`` (needs ``ef.compute_vs``).
    log_enable : bool
        Log progress through ``machina.logger``.
    minibatch_norm_advs : bool
        Standardise ``advs`` within each minibatch (stable-baselines3's
        ``normalize_advantage``; ``standardize_advs``), on top of ``ef.centerize_advs`` over
        the whole batch. A step's weight then depends on the others drawn with it.
    joint_step : bool
        One optimiser step per minibatch on ``pol_loss + vf_loss`` (the value loss is
        ``0.5 * MSE``: stable-baselines3's ``vf_coef=0.5``), the gradient norm clipped over
        both networks together, as stable-baselines3 does. ``optim_pol`` must hold both
        networks' parameters; ``optim_vf`` is not used (pass the same optimiser).

    Returns
    -------
    dict
        ``PolLoss`` and ``VfLoss``: one float per minibatch.
    """
    check_traj(traj, ["advs", "rets", "acs", *(["vs"] if clip_vfunc else [])], "ppo_clip")
    check_stochastic_pol(pol, reparam=False, fn_name="ppo_clip.train")
    if joint_step:
        _check_joint(optim_pol, vf)
        return _train_joint(
            traj, pol, vf, optim_pol, epoch, batch_size, num_epi_per_seq, clip_param,
            ent_beta, max_grad_norm, clip_vfunc, log_enable, minibatch_norm_advs,
        )  # fmt: skip
    log(log_enable, "Optimizing...")
    pol_losses, vf_losses = [], []
    batches = minibatches(
        traj, [pol, vf], batch_size, epoch, num_epi_per_seq, norm_advs=minibatch_norm_advs
    )
    step = PolVfStep(pol, vf, optim_pol, optim_vf, max_grad_norm, "ppo_clip")
    for batch in batches:
        pol_loss, vf_loss = step(
            batch,
            lf.pg_clip(pol, batch, clip_param, ent_beta),
            lambda b: lf.monte_carlo(vf, b, clip_param, clip_vfunc),
        )
        pol_losses.append(pol_loss)
        vf_losses.append(vf_loss)
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, VfLoss=vf_losses)


def _train_joint(
    traj, pol, vf, optim, epoch, batch_size, num_epi_per_seq, clip_param, ent_beta,
    max_grad_norm, clip_vfunc, log_enable, minibatch_norm_advs,
) -> dict[str, list[float]]:  # fmt: skip
    """``train`` with ``joint_step``: one step of ``optim`` on the summed loss per minibatch."""
    log(log_enable, "Optimizing...")
    params = [*pol.parameters(), *vf.parameters()]
    losses = []  # (pol_loss, vf_loss) per minibatch, detached; read back once at the end
    batches = minibatches(
        traj, [pol, vf], batch_size, epoch, num_epi_per_seq, norm_advs=minibatch_norm_advs
    )
    for batch in batches:
        pol_loss = lf.pg_clip(pol, batch, clip_param, ent_beta)
        vf_loss = lf.monte_carlo(vf, batch, clip_param, clip_vfunc)
        optimizer_step(
            optim, pol_loss + vf_loss, params, max_grad_norm,
            name="ppo_clip.train: pol_loss + vf_loss", batch=batch,
        )  # fmt: skip
        losses.append(torch.stack([pol_loss.detach(), vf_loss.detach()]))
    log(log_enable, "Optimization finished!")
    pol_losses, vf_losses = torch.stack(losses).T.tolist() if losses else ([], [])
    return dict(PolLoss=pol_losses, VfLoss=vf_losses)


def _check_joint(optim: torch.optim.Optimizer, vf: torch.nn.Module) -> None:
    held = {id(p) for p in optimizer_params(optim)}
    missing = sum(1 for p in vf.parameters() if id(p) not in held)
    if missing:
        raise ValueError(
            "ppo_clip.train: optim_pol: joint_step needs one optimiser over both networks, "
            f"but {missing} of vf's parameter tensors are not in it"
        )
