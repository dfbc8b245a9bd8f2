"""Adversarial inverse reinforcement learning (Fu et al., 2018).

AIRL's discriminator is ``D = exp(f) / (exp(f) + pi(a|s))`` with
``f(s, a, s') = g(s) + gamma * h(s') - h(s)`` (``rewf`` = g, ``shaping_vf`` = h; or
``f = advf(s, a)``), so its logit is ``f - log pi`` and the policy's reward
``log D - log(1 - D) = f - log pi``. One iteration::

    agent_traj = ef.compute_airl_pseudo_rews(agent_traj, pol, gamma, rewf, shaping_vf)
    ... ef.compute_vs / compute_rets / compute_advs as for PPO or TRPO ...
    agent_traj.register_epis()
    result = airl.train(agent_traj, expert_traj, pol, vf, optim_vf, optim_discrim,
                        rewf=rewf, shaping_vf=shaping_vf, rl_type="ppo_clip", gamma=gamma, ...)

As in ``gail``, the policy step is the chosen algorithm's own ``train`` and only the
discriminator update is AIRL's. After training, ``rewf`` alone is the recovered reward.
"""

from __future__ import annotations

import warnings

import torch

from machina.algos._adversarial import (
    RLStep,
    adversarial_iteration,
    discrim_batches,
    resolve_optim_discrim,
    rl_args,
)
from machina.algos._common import Batch, check_feed_forward, check_traj
from machina.loss_functional.imitation import density_ratio_cross_ent
from machina.traj import Traj
from machina.utils.training import optimizer_step

_NEEDS = ["obs", "acs", "next_obs"]


def update_discrim(
    rewf: torch.nn.Module | None,
    shaping_vf: torch.nn.Module | None,
    advf: torch.nn.Module | None,
    pol: torch.nn.Module,
    optim_discrim: torch.optim.Optimizer,
    agent_batch: Batch,
    expert_batch: Batch,
    gamma: float,
    ent_beta: float = 0.0,
) -> float:
    """One discriminator step on the mean of the agent (label 0) and expert (label 1)
    cross-entropies (``lf.density_ratio_cross_ent``).

    Parameters
    ----------
    rewf, shaping_vf : torch.nn.Module or None
        ``g(s)`` and ``h(s)`` of the reward form, or None with ``advf``.
    advf : torch.nn.Module or None
        ``advf(s, a)`` of the advantage form, or None with ``rewf`` and ``shaping_vf``.
    pol : torch.nn.Module
        The policy that sampled ``agent_batch``; its ``log pi`` enters the logits.
    optim_discrim : torch.optim.Optimizer
        Optimiser of the discriminator's modules.
    agent_batch, expert_batch : dict of str to torch.Tensor
        ``obs``, ``acs``, ``next_obs`` and ``terms`` (or ``dones``), each (B, ...).
    gamma : float
        Discount of the shaping term.
    ent_beta : float
        Entropy bonus of the discriminator's prediction.

    Returns
    -------
    float
        The loss before the step.
    """
    loss = density_ratio_cross_ent(
        pol, agent_batch, 0, gamma, rewf, shaping_vf, advf, ent_beta
    ) + density_ratio_cross_ent(pol, expert_batch, 1, gamma, rewf, shaping_vf, advf, ent_beta)
    return optimizer_step(
        optim_discrim,
        loss / 2,
        name="airl.update_discrim: discrim_loss",
        batch={"agent": agent_batch, "expert": expert_batch},
    )


def _check_rew_type(
    rew_type: str | None,
    rewf: torch.nn.Module | None,
    shaping_vf: torch.nn.Module | None,
    advf: torch.nn.Module | None,
) -> None:
    has_rew = rewf is not None and shaping_vf is not None
    if rew_type not in (None, "rew", "adv"):
        raise ValueError(f"airl.train: rew_type: expected 'rew' or 'adv', got {rew_type!r}")
    if advf is not None and (rewf is not None or shaping_vf is not None):
        # One discriminator form only: with both, which one trains would be a silent guess.
        raise ValueError(
            "airl.train: rewf, shaping_vf, advf: expected rewf and shaping_vf "
            "(rew_type='rew') or advf (rew_type='adv'), not both forms; got "
            f"rewf={type(rewf).__name__}, shaping_vf={type(shaping_vf).__name__}, "
            f"advf={type(advf).__name__}"
        )
    if (rew_type == "rew" or (rew_type is None and advf is None)) and not has_rew:
        raise ValueError(
            "airl.train: rewf, shaping_vf: the reward form (rew_type='rew') needs both, got "
            f"rewf={type(rewf).__name__}, shaping_vf={type(shaping_vf).__name__}"
        )
    if rew_type == "adv" and advf is None:
        raise ValueError("airl.train: advf: rew_type='adv' needs advf(obs, acs), got None")


def _end_key(traj: Traj, name: str) -> str:
    """``terms`` when ``traj`` has it, else ``dones`` (with a warning): the key that cuts the
    shaping term ``h(s')`` in ``traj``'s steps."""
    if "terms" in traj.data_map or "dones" not in traj.data_map:
        return "terms"
    if "truncs" in traj.data_map:  # they tell the truncations apart (utils.ends.terminated)
        return "dones"
    warnings.warn(
        f"airl.train: {name} has 'dones' but no 'terms': its time-limit truncations are "
        "treated as terminations (h(s') cut to 0 after them); store 'terms' to tell them "
        "apart",
        stacklevel=3,
    )
    return "dones"


def train_discrim(
    agent_traj: Traj,
    expert_traj: Traj,
    pol: torch.nn.Module,
    optim_discrim: torch.optim.Optimizer,
    gamma: float,
    rewf: torch.nn.Module | None = None,
    shaping_vf: torch.nn.Module | None = None,
    advf: torch.nn.Module | None = None,
    discrim_batch_size: int = 32,
    discrim_step: int = 1,
    discrim_ent_beta: float = 0.0,
) -> dict[str, list[float]]:
    """``discrim_step`` discriminator steps on random agent and expert batches.

    Parameters
    ----------
    agent_traj, expert_traj : Traj
        Registered agent and expert episodes with ``obs``, ``acs``, ``next_obs`` and
        ``terms``; a Traj with ``dones`` only is accepted with a warning (its truncations
        then count as terminations).
    pol, optim_discrim, gamma, rewf, shaping_vf, advf
        As :func:`update_discrim`; ``pol`` must be the policy that sampled ``agent_traj``.
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
    _check_rew_type(None, rewf, shaping_vf, advf)
    modules = dict(pol=pol, rewf=rewf, shaping_vf=shaping_vf, advf=advf)
    check_feed_forward("airl", **{k: m for k, m in modules.items() if m is not None})
    # Each Traj with its own key: the loss reads terms, or dones where a batch has no terms.
    check_traj(agent_traj, [*_NEEDS, _end_key(agent_traj, "agent_traj")], "airl", "agent_traj")
    check_traj(expert_traj, [*_NEEDS, _end_key(expert_traj, "expert_traj")], "airl", "expert_traj")
    batches = discrim_batches(agent_traj, expert_traj, discrim_batch_size, discrim_step, "airl")
    losses = [
        update_discrim(
            rewf, shaping_vf, advf, pol, optim_discrim, agent, expert, gamma, discrim_ent_beta
        )
        for agent, expert in batches
    ]
    return dict(DiscrimLoss=losses)


def train(
    agent_traj: Traj,
    expert_traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_vf: torch.optim.Optimizer,
    optim_discrim: torch.optim.Optimizer | None = None,
    rewf: torch.nn.Module | None = None,
    shaping_vf: torch.nn.Module | None = None,
    advf: torch.nn.Module | None = None,
    rl_type: str | RLStep = "trpo",
    pol_ent_beta: float = 0.0,
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
    gamma: float = 0.995,
    log_enable: bool = True,
    discrim_ent_beta: float = 0.0,
    rew_type: str | None = None,
    optim_discim: torch.optim.Optimizer | None = None,
) -> dict:
    """One AIRL iteration: ``discrim_step`` discriminator steps, then the policy step of
    ``rl_type``.

    The discriminator is trained first: its logit ``f - log pi`` must use the ``log pi`` of
    the policy that sampled
    ``agent_traj``, which the policy step changes.

    Parameters
    ----------
    agent_traj : Traj
        Registered agent episodes whose ``rews`` are ``ef.compute_airl_pseudo_rews``'s, with
        ``next_obs``, ``terms`` and the keys ``rl_type``'s ``train`` needs.
    expert_traj : Traj
        Registered expert episodes with ``obs``, ``acs``, ``next_obs`` and ``terms`` (or
        only ``dones``, with a warning: truncations then count as terminations).
    pol, vf : torch.nn.Module
        Feed-forward policy (its ``log pi`` enters the discriminator) and value function.
    optim_vf, optim_discrim : torch.optim.Optimizer
        Optimisers of ``vf`` and of the discriminator's modules (``rewf`` and
        ``shaping_vf``, or ``advf``).
    rewf, shaping_vf : torch.nn.Module, optional
        ``g(s)`` and ``h(s)``: ``module(obs) -> (values (B,), info)``.
    advf : torch.nn.Module, optional
        ``advf(obs, acs) -> (values (B,), info)``, instead of ``rewf`` and ``shaping_vf``
        (giving both forms is an error).
    rl_type : {"trpo", "ppo_clip", "ppo_kl", "vpg"} or callable
        The ``machina.algos`` module whose ``train`` takes the policy step, or the policy
        step itself, ``rl_type(agent_traj) -> dict`` (see ``gail.train``).
    gamma : float
        Discount of the shaping term; use the one given to ``compute_airl_pseudo_rews``.
    rew_type : {"rew", "adv"}, optional
        Which discriminator form is meant, checked against the modules given (machina 0.x's
        example passed it).
    log_enable : bool
        Log progress through ``machina.logger``.
    optim_discim : torch.optim.Optimizer, optional
        machina 0.x's misspelt name of ``optim_discrim``, accepted for its scripts.
    (other parameters as ``gail.train``)

    Returns
    -------
    dict
        The policy step's results plus ``DiscrimLoss``, ``new_kl_beta`` and ``kl_mean`` (as
        ``gail.train``'s).
    """
    optim_discrim = resolve_optim_discrim(optim_discrim, optim_discim, "airl")
    _check_rew_type(rew_type, rewf, shaping_vf, advf)
    check_feed_forward("airl", pol=pol)
    return adversarial_iteration(
        "airl",
        rl_type,
        agent_traj,
        pol,
        vf,
        optim_pol,
        optim_vf,
        lambda: train_discrim(
            agent_traj,
            expert_traj,
            pol,
            optim_discrim,
            gamma,
            rewf,
            shaping_vf,
            advf,
            discrim_batch_size,
            discrim_step,
            discrim_ent_beta,
        ),
        rl_args(locals()),
        log_enable,
    )
