"""Imitation losses: behaviour cloning and the GAIL / AIRL discriminators.

Discriminator convention: a logit ``l`` whose sigmoid is the
probability that a step came from the *expert*; expert steps are labelled 1, agent steps 0.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from machina.loss_functional._common import Batch, masked_mean, mean_loss, new_params, run
from machina.pds.base import check_sample
from machina.pds.deterministic_pd import DeterministicPd
from machina.utils import batch_share
from machina.utils.ends import terminated
from machina.vfuncs import DeterministicSVfunc


def log_likelihood(pol: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Behaviour cloning: ``-E[log pi(a|s)]`` over the batch's (expert) actions.

    A deterministic policy (``DeterministicPd``) has no usable likelihood; it is fitted by
    ``0.5 * E[|mean(s) - a|^2]`` instead, the Gaussian log-likelihood with a fixed standard
    deviation up to constants.

    Parameters
    ----------
    pol : torch.nn.Module
        A machina policy; recurrent ones take sequence batches from ``Traj.iterate_rnn``.
    batch : dict of str to torch.Tensor
        ``obs`` and ``acs`` of shape (B, ...) or (T, B, ...) with ``out_masks``.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    _, _, a_i = run(pol, batch)
    params = new_params(a_i)
    acs = batch["acs"]
    if isinstance(pol.pd, DeterministicPd):
        check_sample(acs, params["mean"], "DeterministicPd")
        sq_err = (params["mean"] - acs).pow(2).sum(dim=-1)
        return 0.5 * masked_mean(sq_err, batch)
    return -masked_mean(pol.pd.llh(acs, params), batch)


def _labels(logits: torch.Tensor, expert_or_agent: int | float) -> torch.Tensor:
    if expert_or_agent not in (0, 1):
        raise ValueError(
            "expert_or_agent: expected 1 (expert batch) or 0 (agent batch), "
            f"got {expert_or_agent!r}"
        )
    return torch.full_like(logits, float(expert_or_agent))


def bernoulli_ent(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of Bernoulli(sigmoid(logits)), elementwise: ``-log s(l) + (1 - s(l)) * l``."""
    return (1.0 - torch.sigmoid(logits)) * logits - F.logsigmoid(logits)


def _check_discrim_arity(
    discrim: torch.nn.Module, args: tuple, state_only: bool, exc: TypeError
) -> None:
    """A TypeError naming ``state_only`` when ``discrim``'s forward does not take ``args``
    (a state-action discriminator called on states only, or the reverse)."""
    try:
        inspect.signature(discrim.forward).bind(*args)
    except TypeError:
        given, other = ("obs", "state-action") if state_only else ("obs and acs", "state-only")
        raise TypeError(
            f"discrim: with state_only={state_only} it is called with {given}, which "
            f"{type(discrim).__name__}.forward does not take ({exc}); give a {other} "
            f"discriminator and state_only={not state_only}"
        ) from exc
    except ValueError:  # no signature to read: the original error stands
        pass


def gail_logits(discrim: torch.nn.Module, batch: Batch, state_only: bool = False) -> torch.Tensor:
    """GAIL discriminator logits ``discrim(obs, acs)`` (or ``discrim(obs)``), shape (B,)."""
    if not state_only and isinstance(discrim, DeterministicSVfunc):
        # its second argument is a recurrent state: acs would be taken for one, or ignored
        raise TypeError(
            f"discrim: a state-only {type(discrim).__name__} with state_only=False; give "
            "state_only=True, or a state-action discriminator (DeterministicSAVfunc)"
        )
    args = (batch["obs"],) if state_only else (batch["obs"], batch["acs"])
    try:
        out = discrim(*args)
    except TypeError as exc:
        _check_discrim_arity(discrim, args, state_only, exc)
        raise
    logits = out[0] if isinstance(out, tuple) else out
    return logits.reshape(batch["obs"].shape[0])


def cross_ent(
    discrim: torch.nn.Module,
    batch: Batch,
    expert_or_agent: int,
    ent_beta: float = 0.0,
    state_only: bool = False,
) -> torch.Tensor:
    """GAIL discriminator loss on one batch (Ho & Ermon, 2016).

    Binary cross-entropy of ``discrim``'s logits against the label ``expert_or_agent``,
    minus ``ent_beta`` times the mean entropy of the discriminator's prediction (a bonus
    that keeps it from saturating).

    Parameters
    ----------
    discrim : torch.nn.Module
        ``discrim(obs, acs) -> (logits (B,), info)``, e.g. ``DeterministicSAVfunc`` on a
        ``machina.nets.discrim.DiscrimNet``; ``discrim(obs)`` when ``state_only``.
    batch : dict of str to torch.Tensor
        ``obs`` (B, *ob_shape) and ``acs`` (B, *ac_shape).
    expert_or_agent : int
        1 for a batch of expert steps, 0 for agent steps.
    ent_beta : float
        Entropy bonus coefficient.
    state_only : bool
        The discriminator sees observations only.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    logits = gail_logits(discrim, batch, state_only)
    loss = mean_loss(
        F.binary_cross_entropy_with_logits, logits, _labels(logits, expert_or_agent), batch=batch
    )
    if ent_beta:
        loss = loss - ent_beta * batch_share.share_mean(bernoulli_ent(logits), batch)
    return loss


def airl_energies(
    obs: torch.Tensor,
    acs: torch.Tensor,
    next_obs: torch.Tensor,
    terms: torch.Tensor,
    gamma: float,
    rewf: torch.nn.Module | None = None,
    shaping_vf: torch.nn.Module | None = None,
    advf: torch.nn.Module | None = None,
) -> torch.Tensor:
    """AIRL's ``f(s, a, s')`` (Fu et al., 2018), shape (B,).

    With ``rewf`` and ``shaping_vf``: ``f = g(s) + gamma * (1 - term) * h(s') - h(s)``, the
    disentangled form; ``h(s')`` is cut only where the episode *terminated* — after a
    time-limit truncation ``s'`` is a real state and keeps its shaping term. With ``advf``:
    ``f = advf(s, a)``, the unshaped form.

    Parameters
    ----------
    obs, next_obs : torch.Tensor
        (B, *ob_shape).
    acs : torch.Tensor
        (B, *ac_shape).
    terms : torch.Tensor
        (B,), 1 where ``next_obs`` is terminal.
    gamma : float
        Discount of the shaping term.
    rewf, shaping_vf : torch.nn.Module, optional
        State functions ``g`` and ``h``: ``module(obs) -> (values (B,), info)``.
    advf : torch.nn.Module, optional
        ``advf(obs, acs) -> (values (B,), info)``, instead of ``rewf`` and ``shaping_vf``.

    Raises
    ------
    ValueError
        When neither form is complete, or when both are given (``advf`` with ``rewf`` or
        ``shaping_vf``).
    """
    if advf is not None and (rewf is not None or shaping_vf is not None):
        # Two forms given: which one the caller meant cannot be told, so none is guessed.
        raise ValueError(
            "rewf, shaping_vf, advf: expected rewf and shaping_vf (rew_type='rew') or advf "
            f"(rew_type='adv'), not both forms; got rewf={type(rewf).__name__}, "
            f"shaping_vf={type(shaping_vf).__name__}, advf={type(advf).__name__}"
        )
    if rewf is not None and shaping_vf is not None:
        n = obs.shape[0]
        g = rewf(obs)[0].reshape(n)
        h = shaping_vf(obs)[0].reshape(n)
        next_h = shaping_vf(next_obs)[0].reshape(n)
        return g + gamma * (1.0 - terms.to(g.dtype)) * next_h - h
    if advf is not None:
        return advf(obs, acs)[0].reshape(obs.shape[0])
    raise ValueError(
        "rewf, shaping_vf, advf: expected rewf and shaping_vf (rew_type='rew') or advf "
        f"(rew_type='adv'), got rewf={type(rewf).__name__}, "
        f"shaping_vf={type(shaping_vf).__name__}, advf={type(advf).__name__}"
    )


def airl_logits(
    pol: torch.nn.Module,
    batch: Batch,
    gamma: float,
    rewf: torch.nn.Module | None = None,
    shaping_vf: torch.nn.Module | None = None,
    advf: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Logits of AIRL's discriminator ``D = exp(f) / (exp(f) + pi(a|s))``: ``f - log pi(a|s)``.

    ``log pi`` is a constant here (no gradient to the policy). Returns (B,).
    """
    terms = terminated(batch)
    energies = airl_energies(
        batch["obs"], batch["acs"], batch["next_obs"], terms, gamma, rewf, shaping_vf, advf
    )
    with torch.no_grad():
        llh = pol.pd.llh(batch["acs"], pol.pd_params(batch["obs"]))
    return energies - llh


def density_ratio_cross_ent(
    pol: torch.nn.Module,
    batch: Batch,
    expert_or_agent: int,
    gamma: float,
    rewf: torch.nn.Module | None = None,
    shaping_vf: torch.nn.Module | None = None,
    advf: torch.nn.Module | None = None,
    ent_beta: float = 0.0,
) -> torch.Tensor:
    """AIRL discriminator loss on one batch: binary cross-entropy of :func:`airl_logits`.

    Parameters
    ----------
    pol : torch.nn.Module
        The (feed-forward) policy being trained; its ``log pi(a|s)`` enters the logits.
    batch : dict of str to torch.Tensor
        ``obs``, ``acs``, ``next_obs`` and ``terms`` (or ``dones``), each (B, ...).
    expert_or_agent : int
        1 for a batch of expert steps, 0 for agent steps.
    gamma : float
        Discount of the shaping term.
    rewf, shaping_vf, advf : torch.nn.Module, optional
        See :func:`airl_energies`.
    ent_beta : float
        Entropy bonus on the discriminator's prediction, as in :func:`cross_ent`.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    logits = airl_logits(pol, batch, gamma, rewf, shaping_vf, advf)
    loss = mean_loss(
        F.binary_cross_entropy_with_logits, logits, _labels(logits, expert_or_agent), batch=batch
    )
    if ent_beta:
        loss = loss - ent_beta * batch_share.share_mean(bernoulli_ent(logits), batch)
    return loss
