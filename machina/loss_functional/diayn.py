"""DIAYN: skill discriminator loss and pseudo reward (Eysenbach et al., 2018,
"Diversity is All You Need: Learning Skills without a Reward Function", arXiv:1802.06070).

Observations are ``concat(state, one_hot(z))`` as ``machina.envs.SkillEnv`` makes them. The
discriminator ``q(z | s)`` sees the state alone and returns logits over the skills; the
policy is rewarded ``log q(z | s) - log p(z)`` with the uniform prior ``p(z) = 1 / num_skill``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F

from machina.loss_functional._common import Batch, mean_loss


def split_skill(obs: torch.Tensor, num_skill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``obs (*lead, ob_dim + num_skill)`` into the state and the skill index; a
    RuntimeWarning when the trailing ``num_skill`` entries are not a one-hot.

    Returns
    -------
    state : torch.Tensor
        ``(*lead, ob_dim)``, a view.
    skill : torch.Tensor
        ``(*lead,)`` int64, the argmax of the trailing one-hot.
    """
    if isinstance(num_skill, bool) or not isinstance(num_skill, numbers.Integral) or num_skill < 2:
        raise ValueError(f"num_skill: expected an integer >= 2, got {num_skill!r}")
    if obs.ndim < 1 or obs.shape[-1] <= num_skill:
        raise ValueError(
            f"obs: expected (..., ob_dim + num_skill) with num_skill={num_skill} trailing "
            f"one-hot entries (from SkillEnv), got shape {tuple(obs.shape)}"
        )
    one_hot = obs[..., -num_skill:]
    # a wrong num_skill, or observations without a skill, trained silently on state entries;
    # a warning, not an error: normalised observations (a sampler's prepro) hold a skill
    # whose argmax is still right, though its entries are not 0 and 1
    rows = one_hot.reshape(-1, num_skill)
    is_one_hot = ((rows == 0) | (rows == 1)).all(-1) & (rows.sum(-1) == 1)
    if not bool(is_one_hot.all()):
        # the same text every time: Python's filter then shows it once, not every minibatch
        warnings.warn(
            f"obs: expected the last num_skill={num_skill} entries to be a skill one-hot "
            "(SkillEnv's), got other values: a wrong num_skill, observations without a "
            "skill, or a prepro that normalised the skill (the skill is read as the argmax "
            "of these entries)",
            RuntimeWarning,
            stacklevel=2,
        )
    return obs[..., :-num_skill], one_hot.argmax(dim=-1)


def discrim_logits(discrim: torch.nn.Module, state: torch.Tensor, num_skill: int) -> torch.Tensor:
    """``discrim(state)`` as logits ``(*lead, num_skill)``.

    ``discrim`` may return the logits or a tuple whose first item they are (as machina's
    value functions return ``(values, info)``).
    """
    out = discrim(state)
    logits = out[0] if isinstance(out, tuple) else out
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (
        *state.shape[:-1],
        num_skill,
    ):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"discrim: expected logits of shape {(*state.shape[:-1], num_skill)} for states of "
            f"shape {tuple(state.shape)}, got {shape}"
        )
    return logits


def diayn_rews(discrim: torch.nn.Module, obs: torch.Tensor, num_skill: int) -> torch.Tensor:
    """Pseudo reward ``log q(z | s) - log p(z)`` with ``p(z) = 1 / num_skill``.

    Parameters
    ----------
    discrim : torch.nn.Module
        ``state (B, ob_dim) -> logits (B, num_skill)``.
    obs : torch.Tensor
        ``(B, ob_dim + num_skill)``: states with the one-hot of the skill they were reached
        under.
    num_skill : int

    Returns
    -------
    torch.Tensor
        ``(B,)``, at most ``log(num_skill)``; 0 where the discriminator is at chance.
        Carries gradient to ``discrim`` (wrap in ``torch.no_grad`` for rewards).
    """
    state, skill = split_skill(obs, num_skill)
    log_q = F.log_softmax(discrim_logits(discrim, state, num_skill), dim=-1)
    return log_q.gather(-1, skill.unsqueeze(-1)).squeeze(-1) + math.log(num_skill)


def cross_ent_diayn(
    discrim: torch.nn.Module, batch: Batch, num_skill: int, ob_key: str = "next_obs"
) -> torch.Tensor:
    """Discriminator loss: mean cross-entropy of ``q(z | s)`` against the skill each state
    was reached under; a scalar.

    Parameters
    ----------
    discrim : torch.nn.Module
        ``state (B, ob_dim) -> logits (B, num_skill)``.
    batch : dict of str to torch.Tensor
        Holds ``ob_key`` of shape ``(B, ob_dim + num_skill)``.
    num_skill : int
    ob_key : str
        Which observations to classify: ``"next_obs"`` (the states the actions led to, the
        ones the pseudo reward scores by default) or ``"obs"`` (the states they were taken in).
    """
    if ob_key not in batch:
        raise KeyError(f"cross_ent_diayn: batch has no '{ob_key}' (ob_key)")
    state, skill = split_skill(batch[ob_key], num_skill)
    return mean_loss(F.cross_entropy, discrim_logits(discrim, state, num_skill), skill, batch=batch)


def skill_accuracy(discrim: torch.nn.Module, obs: torch.Tensor, num_skill: int) -> torch.Tensor:
    """Fraction of ``obs (B, ob_dim + num_skill)`` whose skill is the discriminator's argmax.

    A scalar without gradient; chance level is ``1 / num_skill``.
    """
    state, skill = split_skill(obs, num_skill)
    with torch.no_grad():
        logits = discrim_logits(discrim, state, num_skill)
    return (logits.argmax(dim=-1) == skill).float().mean()
