"""Generative adversarial imitation learning (Ho & Ermon, 2016).

GAIL is an on-policy algorithm run on a learned reward. One iteration::

    agent_traj = ef.compute_pseudo_rews(agent_traj, discrim)   # rews <- -log(1 - D(s, a))
    ... ef.compute_vs / compute_rets / compute_advs as for PPO or TRPO ...
    agent_traj.register_epis()
    result = gail.train(agent_traj, expert_traj, pol, vf, discrim, optim_vf, optim_discrim,
                        rl_type="ppo_clip", optim_pol=optim_pol, ...)

``train`` calls ``train_discrim``, then the chosen algorithm's own ``train`` (``rl_type``)
for the policy and value function. Scripts that want another schedule call the pieces
themselves: ``train_discrim`` and any on-policy ``train`` on the pseudo-rewarded Traj.
"""

from __future__ import annotations

import torch

from machina.algos._adversarial import (
    RLStep,
    adversarial_iteration,
    discrim_batches,
    resolve_optim_discrim,
    rl_args,
)
from machina.algos._common import Batch, check_feed_forward, check_traj
from machina.loss_functional.imitation import cross_ent
from machina.traj import Traj
from machina.utils.training import optimizer_step


def update_discrim(
    discrim: torch.nn.Module,
    optim_discrim: torch.optim.Optimizer,
    agent_batch: Batch,
    expert_batch: Batch,
    ent_beta: float = 0.001,
    state_only: bool = False,
) -> float:
    """One discriminator step on the mean of the agent (label 0) and expert (label 1)
    cross-entropies (``lf.cross_ent``).

    Parameters
    ----------
    discrim : torch.nn.Module
        ``discrim(obs, acs) -> (logits (B,), info)`` (``discrim(obs)`` when ``state_only``).
    optim_discrim : torch.optim.Optimizer
        Optimiser of ``discrim``.
    agent_batch, expert_batch : dict of str to torch.Tensor
        ``obs`` (B, *ob_shape) and ``acs`` (B, *ac_shape) of agent and expert steps.
    ent_beta : float
        Entropy bonus of the discriminator's prediction.
    state_only : bool
        The discriminator sees observations only.

    Returns
    -------
    float
        The loss before the step.
    """
    loss = cross_ent(discrim, agent_batch, 0, ent_beta, state_only)
    loss = loss + cross_ent(discrim, expert_batch, 1, ent_beta, state_only)
    return optimizer_step(
        optim_discrim,
        loss / 2,
        name="gail.update_discrim: discrim_loss",
        batch={"agent": agent_batch, "expert": expert_batch},
    )


def train_discrim(
    agent_traj: Traj,
    expert_traj: Traj,
    discrim: torch.nn.Module,
    optim_discrim: torch.optim.Optimizer,
    discrim_batch_size: int = 32,
    discrim_step: int = 1,
    discrim_ent_beta: float = 0.0,
    state_only: bool = False,
) -> dict[str, list[float]]:
    """``discrim_step`` discriminator steps on random agent and expert batches.

    Parameters
    ----------
    agent_traj, expert_traj : Traj
        Registered agent and expert episodes with ``obs`` (and ``acs`` unless
        ``state_only``).
    discrim, optim_discrim, state_only
        As :func:`update_discrim`.
    discrim_batch_size : int
        Steps per batch, drawn from each Traj; at most the steps each holds.
    discrim_step : int
        Number of steps.
    discrim_ent_beta : float
        Entropy bonus of the discriminator's prediction.

    Returns
    -------
    dict
        ``DiscrimLoss``: one float per step.
    """
    keys = ["obs"] if state_only else ["obs", "acs"]
    check_traj(agent_traj, keys, "gail", "agent_traj")
    check_traj(expert_traj, keys, "gail", "expert_traj")
    check_feed_forward("gail", discrim=discrim)
    batches = discrim_batches(agent_traj, expert_traj, discrim_batch_size, discrim_step, "gail")
    losses = [
        update_discrim(discrim, optim_discrim, agent, expert, discrim_ent_beta, state_only)
        for agent, expert in batches
    ]
    return dict(DiscrimLoss=losses)


def train(
    agent_traj: Traj,
    expert_traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    discrim: torch.nn.Module,
    optim_vf: torch.optim.Optimizer,
    optim_discrim: torch.optim.Optimizer | None = None,
    rl_type: str | RLStep = "trpo",
    pol_ent_beta: float = 0.0,
    discrim_ent_beta: float = 0.0,
    epoch: int = 1,
    batch_size: int = 64,
    discrim_batch_size: int = 32,
    num_epi_per_seq: int = 1,
    discrim_step: int = 1,
    damping: float = 0.1,
    max_kl: float = 0.01,
    num_cg: int = 10,
    optim_pol: torch.optim.Optimizer | None = None,
    clip_param: float = 0.2,
    max_grad_norm: float | None = 0.5,
    clip_vfunc: bool = False,
    kl_beta: float = 1.0,
    kl_targ: float = 0.01,
    log_enable: bool = True,
    state_only: bool = False,
    optim_discim: torch.optim.Optimizer | None = None,
) -> dict:
    """One GAIL iteration: ``discrim_step`` discriminator steps, then the policy step of
    ``rl_type``.

    The discriminator is trained before the policy step, on the samples of the policy that
    drew them; the policy step's rewards are the
    pseudo rewards already in ``agent_traj``, so the order changes the discriminator that the
    next iteration's pseudo rewards come from only by being trained on fresher data.

    Parameters
    ----------
    agent_traj : Traj
        Registered agent episodes whose ``rews`` are ``ef.compute_pseudo_rews``'s, with the
        keys ``rl_type``'s ``train`` needs (``advs``, ``rets``, ...).
    expert_traj : Traj
        Registered expert episodes with ``obs`` and ``acs`` (in the policy's action space).
    pol, vf : torch.nn.Module
        Policy and state-value function.
    discrim : torch.nn.Module
        ``discrim(obs, acs) -> (logits, info)`` (``discrim(obs)`` when ``state_only``);
        ``sigmoid(logits)`` is the probability that a step is the expert's.
    optim_vf, optim_discrim : torch.optim.Optimizer
        Optimisers of ``vf`` and ``discrim``.
    rl_type : {"trpo", "ppo_clip", "ppo_kl", "vpg"} or callable
        The ``machina.algos`` module whose ``train`` takes the policy step, or the policy
        step itself, ``rl_type(agent_traj) -> dict``: e.g.
        ``functools.partial(ppo_clip.train, pol=pol, vf=vf, optim_pol=optim_pol,
        optim_vf=optim_vf, epoch=10, batch_size=64)`` or a ``train`` of your own. With a
        callable, the policy-step parameters below (``pol_ent_beta`` to ``kl_targ``) are
        unused: bind them into the callable.
    pol_ent_beta : float
        Entropy bonus of the policy step.
    discrim_ent_beta : float
        Entropy bonus of the discriminator (see ``lf.cross_ent``).
    epoch, batch_size, num_epi_per_seq
        Passed to the policy step.
    discrim_batch_size, discrim_step : int
        Steps per discriminator batch (from each Traj; at most the steps each holds) and
        number of discriminator steps.
    damping, max_kl, num_cg
        ``trpo`` only.
    optim_pol : torch.optim.Optimizer, optional
        Needed by every ``rl_type`` but ``trpo``.
    clip_param, clip_vfunc
        ``ppo_clip`` only.
    max_grad_norm : float or None
        Gradient-norm clip of the policy step (not ``trpo``).
    kl_beta, kl_targ
        ``ppo_kl`` only; pass the returned ``new_kl_beta`` to the next call.
    state_only : bool
        The discriminator sees observations only.
    log_enable : bool
        Log progress through ``machina.logger``.
    optim_discim : torch.optim.Optimizer, optional
        machina 0.x's misspelt name of ``optim_discrim``, accepted for its scripts.

    Returns
    -------
    dict
        The policy step's results (``PolLoss``, ``VfLoss``, ...) plus ``DiscrimLoss`` (one
        float per step), ``new_kl_beta`` and ``kl_mean`` (``ppo_kl``'s; for ``trpo`` the
        step's KL and 0; else 0).
    """
    optim_discrim = resolve_optim_discrim(optim_discrim, optim_discim, "gail")
    check_traj(agent_traj, ["obs", "acs"], "gail", "agent_traj")
    return adversarial_iteration(
        "gail",
        rl_type,
        agent_traj,
        pol,
        vf,
        optim_pol,
        optim_vf,
        lambda: train_discrim(
            agent_traj,
            expert_traj,
            discrim,
            optim_discrim,
            discrim_batch_size,
            discrim_step,
            discrim_ent_beta,
            state_only,
        ),
        rl_args(locals()),
        log_enable,
    )
