"""What GAIL and AIRL share: the policy step by any on-policy algorithm, discriminator batches.

Adversarial imitation is an on-policy algorithm run on a learned reward: the reward is an
estimator (``ef.compute_pseudo_rews`` / ``ef.compute_airl_pseudo_rews``), the policy step is
the chosen algorithm's own ``train`` (called here, never copied), and only the discriminator
update is new.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from machina.algos import ppo_clip, ppo_kl, trpo, vpg
from machina.algos._common import Batch
from machina.traj import Traj

RL_TYPES = ("trpo", "ppo_clip", "ppo_kl", "vpg")


def rl_step(
    rl_type: str,
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_pol: torch.optim.Optimizer | None,
    optim_vf: torch.optim.Optimizer,
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
    """One call of ``machina.algos.<rl_type>.train`` on ``traj`` with the matching arguments."""
    if rl_type not in RL_TYPES:
        raise ValueError(f"{algo}.train: rl_type: expected one of {RL_TYPES}, got {rl_type!r}")
    if rl_type == "trpo":
        if pol_ent_beta:
            raise ValueError(
                f"{algo}.train: pol_ent_beta: trpo has no entropy bonus, expected 0, "
                f"got {pol_ent_beta!r}; use rl_type='ppo_clip' for one"
            )
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
            log_enable=False,
        )
    if optim_pol is None:
        raise ValueError(f"{algo}.train: optim_pol: rl_type={rl_type!r} needs one, got None")
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
    agent_traj: Traj, expert_traj: Traj, batch_size: int, step: int
) -> Iterator[tuple[Batch, Batch]]:
    """``step`` pairs of (agent, expert) batches of ``batch_size`` steps drawn uniformly."""
    if step < 0:
        raise ValueError(f"discrim_step: expected an int >= 0, got {step!r}")
    return zip(
        agent_traj.random_batch(batch_size, epoch=step),
        expert_traj.random_batch(batch_size, epoch=step),
    )
