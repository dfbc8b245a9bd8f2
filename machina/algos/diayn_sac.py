"""Soft actor-critic on DIAYN's pseudo reward (Eysenbach et al., 2018, "Diversity is All You
Need", arXiv:1802.06070).

Every batch's ``rews`` are replaced by ``log q(z | s) - log p(z)`` from the *current*
discriminator, then :func:`machina.algos.sac.train` takes its step: the replay memory keeps
the environment's rewards, and old transitions are scored by today's discriminator, not by
the one that was current when they were sampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from machina.algos import sac
from machina.algos._common import check_traj
from machina.loss_functional.diayn import diayn_rews, split_skill
from machina.traj import Traj
from machina.utils import batch_share
from machina.utils.aliases import keyword_aliases

__all__ = ["calc_rewards", "train"]


@keyword_aliases(obskill="obs")
def calc_rewards(
    obs: torch.Tensor, num_skill: int, discrim: torch.nn.Module
) -> tuple[torch.Tensor, dict]:
    """DIAYN pseudo rewards of observations, without gradient (a reward function for
    ``ef.compute_diayn_rews``'s ``rew_giver``).

    Parameters
    ----------
    obs : torch.Tensor
        ``(B, ob_dim + num_skill)``: states with their skill one-hot (``SkillEnv``).
    num_skill : int
    discrim : torch.nn.Module
        ``state (B, ob_dim) -> logits (B, num_skill)``.

    Returns
    -------
    rews : torch.Tensor
        ``(B,)``, ``log q(z | s) - log p(z)``.
    info : dict
        ``skill``: ``(B,)`` int64, the skill of each observation.
    """
    with torch.no_grad():
        rews = diayn_rews(discrim, obs, num_skill)
    return rews, dict(skill=split_skill(obs, num_skill)[1])


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
    sampling: int,
    discrim: torch.nn.Module,
    num_skill: int,
    reparam: bool = True,
    log_enable: bool = True,
    target_ent: float | None = None,
    max_grad_norm: float | None = None,
    ob_key: str = "next_obs",
) -> dict:
    """Take ``epoch`` SAC steps on random batches of ``traj`` rewarded by DIAYN.

    Each batch's ``rews`` become ``log q(z | s) - log p(z)`` of its ``ob_key`` observations
    under ``discrim`` (see :func:`machina.loss_functional.diayn.diayn_rews`), then the step
    is :func:`machina.algos.sac.train`'s. Train ``discrim`` itself with
    :func:`machina.algos.diayn.train`.

    Parameters
    ----------
    traj : Traj
        Replay memory of registered ``SkillEnv`` episodes with ``obs``, ``acs``, ``rews``,
        ``next_obs`` and ``terms``; observations end with the skill one-hot, which the
        policy and Q functions see and the discriminator does not.
    pol, qfs, targ_qfs, log_alpha, optim_pol, optim_qfs, optim_alpha
        As :func:`machina.algos.sac.train`. DIAYN used a fixed temperature (0.1): give
        ``log_alpha`` the value ``log(0.1)`` and an ``optim_alpha`` with ``lr=0``.
    epoch, batch_size, tau, gamma, sampling, reparam, log_enable, target_ent, max_grad_norm
        As :func:`machina.algos.sac.train`.
    discrim : torch.nn.Module
        ``state (B, ob_dim) -> logits (B, num_skill)``.
    num_skill : int
        Number of skills of the ``SkillEnv``.
    ob_key : str
        Observations the reward scores: ``"next_obs"`` (the state each action led to) or
        ``"obs"``; use the same as for ``diayn.train``.

    Returns
    -------
    dict
        :func:`machina.algos.sac.train`'s, plus ``DiaynRew``: the mean pseudo reward of the
        batches (0 at chance, ``log(num_skill)`` when every state tells its skill; nan
        without a batch).
    """
    check_traj(traj, (*sac.OFF_POLICY_KEYS, ob_key), "diayn_sac")
    rew_sum, rew_count, last = 0.0, 0, None

    def relabel(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        nonlocal rew_sum, rew_count, last
        last = batch
        with torch.no_grad():
            rews = diayn_rews(discrim, batch[ob_key], num_skill)
        batch["rews"] = rews.to(batch["rews"].dtype)
        rew_sum += float(rews.sum())
        rew_count += len(rews)
        return batch

    result = sac._train(
        traj, pol, qfs, targ_qfs, log_alpha, optim_pol, optim_qfs, optim_alpha, epoch,
        batch_size, tau, gamma, sampling, reparam, log_enable, target_ent, max_grad_norm,
        relabel, algo="diayn_sac",
    )  # fmt: skip
    if last is not None and batch_share.splits(last):  # the ranks' shares (one all-reduce)
        totals = batch_share.rank_mean(
            torch.tensor([rew_sum, rew_count], dtype=torch.float64, device=last["rews"].device),
            last,
        )
        result["DiaynRew"] = float(totals[0] / totals[1].clamp_min(1e-12))
    else:  # nan without a batch (epoch=0): no reward measured, not one at chance (0)
        result["DiaynRew"] = rew_sum / rew_count if rew_count else math.nan
    return result
