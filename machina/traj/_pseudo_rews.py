"""Estimators that replace the environment's rewards with a learned one (GAIL, AIRL).

Like every estimator in ``epi_functional``, each takes a Traj (its pending episodes) or a
list of episodes and returns a new object of the same kind: ``rews`` becomes the learned
reward and ``real_rews`` keeps the environment's, so that scripts can still report the true
return. ``real_rews`` is written once: estimating again (e.g. with a newer discriminator)
replaces ``rews`` but keeps the true rewards.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from machina.loss_functional.imitation import airl_energies, gail_logits
from machina.traj._episodes import Columns, episode_function
from machina.traj._modules import chunked_no_grad, module_device
from machina.utils.ends import terminated
from machina.utils.recurrent import check_feed_forward

__all__ = ["compute_airl_pseudo_rews", "compute_pseudo_rews"]


def _with_real_rews(data: Columns, rews: np.ndarray) -> dict[str, np.ndarray]:
    real = data["real_rews"] if "real_rews" in data else data.require("rews", "pseudo rewards")
    return {"rews": rews, "real_rews": real}


@episode_function
def compute_pseudo_rews(
    data: Columns, rew_giver: torch.nn.Module, state_only: bool = False
) -> dict[str, np.ndarray]:
    """Replace ``rews`` (T,) with GAIL's reward ``-log(1 - D(s, a))`` and keep ``real_rews``.

    ``D = sigmoid(logit)`` is the discriminator's probability that a step is the expert's,
    so the reward ``softplus(logit)`` is positive and grows as the agent looks more like the
    expert (Ho & Ermon, 2016).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``obs`` (T, *ob_shape), ``acs`` (T, *ac_shape) and ``rews`` (T,).
    rew_giver : torch.nn.Module
        The discriminator: ``rew_giver(obs, acs) -> (logits (T,), info)`` as in
        ``gail.train``, or ``rew_giver(obs)`` when ``state_only``.
    state_only : bool
        The discriminator sees observations only.

    Returns
    -------
    Traj or list of dict
        With ``rews`` float32 the pseudo rewards and ``real_rews`` the environment's.
    """
    check_feed_forward("compute_pseudo_rews", rew_giver=rew_giver)
    obs = data.require("obs", "compute_pseudo_rews")
    acs = None if state_only else data.require("acs", "compute_pseudo_rews")
    device = module_device(rew_giver)

    def pseudo_rews(rows: slice) -> torch.Tensor:
        batch = {"obs": torch.as_tensor(obs[rows], device=device)}
        if not state_only:
            batch["acs"] = torch.as_tensor(acs[rows], device=device)
        return F.softplus(gail_logits(rew_giver, batch, state_only))

    rews = chunked_no_grad(data.num_step, pseudo_rews)
    return _with_real_rews(data, rews)


@episode_function
def compute_airl_pseudo_rews(
    data: Columns,
    pol: torch.nn.Module,
    gamma: float,
    rewf: torch.nn.Module | None = None,
    shaping_vf: torch.nn.Module | None = None,
    advf: torch.nn.Module | None = None,
) -> dict[str, np.ndarray]:
    """Replace ``rews`` (T,) with AIRL's reward ``log D - log(1 - D) = f(s, a, s') - log pi(a|s)``.

    ``D = exp(f) / (exp(f) + pi)`` is AIRL's discriminator (Fu et al., 2018); the
    ``-log pi`` part makes policy optimisation on this reward entropy-regularised. ``f``
    is :func:`machina.loss_functional.imitation.airl_energies`: ``g(s) + gamma * h(s') -
    h(s)``, where ``h(s')`` is dropped only at a *terminated* step (a truncated episode's
    last ``next_obs`` is a real state).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``obs``, ``next_obs`` (T, *ob_shape), ``acs`` (T, *ac_shape),
        ``terms`` (T,) (old data: ``dones``) and ``rews`` (T,).
    pol : torch.nn.Module
        The feed-forward policy being trained.
    gamma : float
        Discount, the same as the discriminator's (``airl.train``'s ``gamma``).
    rewf, shaping_vf, advf : torch.nn.Module, optional
        ``g`` and ``h`` (``module(obs) -> (values, info)``), or ``advf(obs, acs)`` alone.

    Returns
    -------
    Traj or list of dict
        With ``rews`` float32 the pseudo rewards and ``real_rews`` the environment's.
    """
    check_feed_forward(
        "compute_airl_pseudo_rews", pol=pol, rewf=rewf, shaping_vf=shaping_vf, advf=advf
    )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: expected a float in [0, 1], got {gamma!r}")
    name = "compute_airl_pseudo_rews"
    obs = data.require("obs", name)
    acs = data.require("acs", name)
    next_obs = data.require("next_obs", name, "ef.add_next_obs (EpiSampler episodes carry it)")
    data.require("terms" if "terms" in data else "dones", name)
    terms = terminated(data)
    device = module_device(pol, rewf, shaping_vf, advf)

    def pseudo_rews(rows: slice) -> torch.Tensor:
        obs_rows = torch.as_tensor(obs[rows], device=device)
        acs_rows = torch.as_tensor(acs[rows], device=device)
        energies = airl_energies(
            obs_rows,
            acs_rows,
            torch.as_tensor(next_obs[rows], device=device),
            torch.as_tensor(terms[rows], device=device),
            gamma,
            rewf,
            shaping_vf,
            advf,
        )
        return energies - pol.pd.llh(acs_rows, pol.pd_params(obs_rows))

    return _with_real_rews(data, chunked_no_grad(data.num_step, pseudo_rews))
