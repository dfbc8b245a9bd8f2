"""What GAIL and AIRL share: the policy step by any on-policy algorithm, discriminator batches.

Adversarial imitation is an on-policy algorithm run on a learned reward: the reward is an
estimator (``ef.compute_pseudo_rews`` / ``ef.compute_airl_pseudo_rews``), the policy step is
the chosen algorithm's own ``train`` (called here, never copied), and only the discriminator
update is new.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from machina.algos import ppo_clip, ppo_kl, trpo, vpg
from machina.algos._common import Batch, log
from machina.traj import Traj

RL_TYPES = ("trpo", "ppo_clip", "ppo_kl", "vpg")
# The arguments of gail.train / airl.train that go to the policy step (rl_step).
RL_ARGS = (
    "epoch",
    "batch_size",
    "num_epi_per_seq",
    "pol_ent_beta",
    "max_grad_norm",
    "clip_param",
    "clip_vfunc",
    "kl_beta",
    "kl_targ",
    "damping",
    "max_kl",
    "num_cg",
)


def resolve_optim_discrim(
    optim_discrim: torch.optim.Optimizer | None,
    optim_discim: torch.optim.Optimizer | None,
    algo: str,
) -> torch.optim.Optimizer:
    """The discriminator's optimiser, given as ``optim_discrim`` or as machina 0.x's
    misspelt ``optim_discim`` (accepted so that its scripts port), never both."""
    if optim_discim is not None:
        if optim_discrim is not None:
            raise TypeError(f"{algo}.train: got both optim_discrim and optim_discim; pass one")
        optim_discrim = optim_discim
    if optim_discrim is None:
        raise TypeError(f"{algo}.train: optim_discrim: expected a torch.optim.Optimizer, got None")
    return optim_discrim


#: the inner policy step of ``gail.train`` / ``airl.train`` given as a function:
#: ``rl_step(agent_traj) -> result dict``, e.g. ``functools.partial(ppo_clip.train, pol=pol,
#: vf=vf, optim_pol=optim_pol, optim_vf=optim_vf, epoch=10, batch_size=64)``.
RLStep = Callable[[Traj], Mapping[str, Any]]


def adversarial_iteration(
    algo: str,
    rl_type: str | RLStep,
    agent_traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer | None,
    optim_vf: torch.optim.Optimizer,
    train_discrim: Callable[[], dict[str, list[float]]],
    rl_args: Mapping[str, Any],
    log_enable: bool,
) -> dict:
    """One iteration of ``gail.train`` / ``airl.train``: the discriminator steps, then the
    policy step of ``rl_type`` on ``agent_traj`` (whose pseudo rewards are already computed).

    The discriminator is trained first, on the samples of the policy that drew them: AIRL's
    logit ``f - log pi`` must use the ``log pi`` of that policy, which the policy step would
    change. The policy step's rewards come from the discriminator as it was when
    ``agent_traj``'s pseudo rewards were computed, either way.

    Parameters
    ----------
    algo : str
        ``"gail"`` or ``"airl"``, for error messages.
    rl_type : str or callable
        One of ``RL_TYPES``, or the policy step itself: ``rl_type(agent_traj) -> dict``.
    train_discrim : callable
        Runs the discriminator steps; returns ``{"DiscrimLoss": [...]}``.
    rl_args : mapping
        The ``RL_ARGS`` values (see ``rl_args``).
    (other parameters as ``rl_step``)

    Returns
    -------
    dict
        The policy step's results plus ``DiscrimLoss``, and ``new_kl_beta`` and ``kl_mean``
        (0 where the policy step has no such result, as in machina 0.x).
    """
    if not callable(rl_type):
        check_rl_step(rl_type, optim_pol, rl_args["pol_ent_beta"], algo)
    log(log_enable, "Optimizing...")
    discrim_result = train_discrim()
    if callable(rl_type):
        result = rl_type(agent_traj)
        if not isinstance(result, Mapping):
            raise TypeError(
                f"{algo}.train: rl_type: the policy step must return a dict of results, "
                f"got {type(result).__name__}"
            )
        result = dict(result)
    else:
        result = rl_step(rl_type, agent_traj, pol, vf, optim_pol, optim_vf, algo=algo, **rl_args)
    result.update(discrim_result)
    if "kl_mean" not in result:
        kl = result.get("KL")
        result["kl_mean"] = float(kl[-1]) if kl else 0
    result.setdefault("new_kl_beta", 0)
    log(log_enable, "Optimization finished!")
    return result


def rl_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``RL_ARGS`` entries of ``params`` (e.g. ``locals()`` at the top of a ``train``)."""
    return {name: params[name] for name in RL_ARGS}


def check_discrim_batch_size(batch_size: int, traj: Traj, traj_name: str, algo: str) -> None:
    """A ValueError naming ``discrim_batch_size`` and ``traj_name`` when ``batch_size`` is not
    a positive int at most ``traj.num_step`` (batches are drawn from every step of it)."""
    try:
        size = operator.index(batch_size)
    except TypeError:
        size = None
    if size is None or size < 1:
        raise ValueError(
            f"{algo}.train: discrim_batch_size: expected a positive int, got {batch_size!r}"
        )
    if size > traj.num_step:
        raise ValueError(
            f"{algo}.train: discrim_batch_size: expected at most the {traj.num_step} steps "
            f"{traj_name} holds, got {batch_size}"
        )


def check_rl_step(
    rl_type: str, optim_pol: torch.optim.Optimizer | None, pol_ent_beta: float, algo: str
) -> None:
    """The errors of a policy step that cannot run, raised before anything is trained."""
    if rl_type not in RL_TYPES:
        raise ValueError(
            f"{algo}.train: rl_type: expected one of {RL_TYPES} or a function "
            f"rl_step(agent_traj) -> dict, got {rl_type!r}"
        )
    if rl_type != "trpo" and optim_pol is None:
        raise ValueError(f"{algo}.train: optim_pol: rl_type={rl_type!r} needs one, got None")


def rl_step(
    rl_type: str,
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer | None,
    optim_vf: torch.optim.Optimizer,
    *,
    epoch: int,
    batch_size: int,
    num_epi_per_seq: int,
    pol_ent_beta: float,
    max_grad_norm: float | None,
    clip_param: float,
    clip_vfunc: bool,
    kl_beta: float,
    kl_targ: float,
    damping: float,
    max_kl: float,
    num_cg: int,
    algo: str,
) -> dict:
    """One call of ``machina.algos.<rl_type>.train`` on ``traj`` with the matching arguments.

    Parameters
    ----------
    rl_type : {"trpo", "ppo_clip", "ppo_kl", "vpg"}
        The algorithm of the policy step.
    traj : Traj
        Registered episodes with the keys that algorithm needs (``advs``, ``rets``, ...).
    pol, vf : torch.nn.Module
        Policy and state-value function.
    optim_pol : torch.optim.Optimizer or None
        Needed by every ``rl_type`` but ``trpo``.
    optim_vf : torch.optim.Optimizer
        Optimiser of ``vf``.
    epoch, batch_size, num_epi_per_seq : int
        Passes, minibatch size and (recurrent) episodes per sequence.
    pol_ent_beta : float
        Entropy bonus.
    max_grad_norm : float or None
        Gradient-norm clip (not ``trpo``).
    clip_param, clip_vfunc
        ``ppo_clip`` only.
    kl_beta, kl_targ
        ``ppo_kl`` only.
    damping, max_kl, num_cg
        ``trpo`` only.
    algo : str
        ``"gail"`` or ``"airl"``, for error messages.

    Returns
    -------
    dict
        The chosen ``train``'s result.
    """
    check_rl_step(rl_type, optim_pol, pol_ent_beta, algo)
    if rl_type == "trpo":
        return trpo.train(
            traj,
            pol,
            vf,
            optim_vf,
            epoch=epoch,
            batch_size=batch_size,
            num_epi_per_seq=num_epi_per_seq,
            max_kl=max_kl,
            num_cg=num_cg,
            damping=damping,
            ent_beta=pol_ent_beta,
            log_enable=False,
        )
    common = dict(
        epoch=epoch,
        batch_size=batch_size,
        num_epi_per_seq=num_epi_per_seq,
        ent_beta=pol_ent_beta,
        max_grad_norm=max_grad_norm,
        log_enable=False,
    )
    if rl_type == "ppo_clip":
        return ppo_clip.train(
            traj,
            pol,
            vf,
            optim_pol,
            optim_vf,
            clip_param=clip_param,
            clip_vfunc=clip_vfunc,
            **common,
        )
    if rl_type == "ppo_kl":
        return ppo_kl.train(traj, pol, vf, kl_beta, kl_targ, optim_pol, optim_vf, **common)
    return vpg.train(traj, pol, vf, optim_pol, optim_vf, **common)


def discrim_batches(
    agent_traj: Traj, expert_traj: Traj, batch_size: int, step: int, algo: str = "gail"
) -> Iterator[tuple[Batch, Batch]]:
    """``step`` pairs of (agent, expert) batches of ``batch_size`` steps drawn uniformly."""
    if step < 0:
        raise ValueError(f"{algo}.train: discrim_step: expected an int >= 0, got {step!r}")
    check_discrim_batch_size(batch_size, agent_traj, "agent_traj", algo)
    check_discrim_batch_size(batch_size, expert_traj, "expert_traj", algo)
    return zip(
        agent_traj.random_batch(batch_size, epoch=step),
        expert_traj.random_batch(batch_size, epoch=step),
    )
