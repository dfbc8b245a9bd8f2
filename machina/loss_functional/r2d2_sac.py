"""Recurrent soft actor-critic losses on sequence batches with burn-in (R2D2-style).

Batches are fixed-length windows from ``Traj.prioritized_random_batch_rnn`` /
``random_batch_rnn``: columns ``(T, B, ...)``, ``out_masks`` and ``h_masks`` ``(T, B)``.
Every recurrent module runs over a window from its zero initial state. The first
``burn_in_length`` steps only warm that state up (Kapturowski et al., 2019, section 3): the
state is detached after them and their losses are left out, except in windows that start at
an episode's first step (``h_masks[0] == 1``), where the zero state is exact and every step is
trained.

Q functions must keep their recurrent state independent of the action (the action enters
after the recurrence, as in an LSTM over observations followed by a head on
``(features, action)``): the target ``Q'(h_{t+1}, a')`` of every step then comes from one
pass over the window's observations with the sampled next actions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from machina.loss_functional._common import Batch, make_module_callable, weighted_mean
from machina.loss_functional.q import bellman_target
from machina.loss_functional.sac import sample_acs, with_terms
from machina.utils import batch_share
from machina.utils.recurrent import detach_hs
from machina.utils.spaces import default_target_entropy


def _masked_mean(x: torch.Tensor, masks: torch.Tensor, batch: Batch | None = None) -> torch.Tensor:
    """Mean of ``x`` weighted by ``masks`` over its non-zero entries; padding is selected
    away, not multiplied by 0, so that a non-finite value there cannot leak in. For a rank's
    share of a minibatch (``Traj(ddp=True)``), divided by the whole minibatch's count per
    rank, so that the ranks' averaged gradients are the single process's."""
    return weighted_mean(x, masks, (masks > 0).sum(), batch)


def train_masks(batch: Batch, burn_in_length: int) -> torch.Tensor:
    """``(T, B)`` float mask of the trained steps: real steps after burn-in, or every real
    step of a window that starts its episode."""
    masks = batch["out_masks"].clone()
    if burn_in_length > 0:
        starts_epi = batch["h_masks"][0] > 0
        masks[:burn_in_length] *= starts_epi.to(masks.dtype)[None, :]
    return masks


def _pol_params(pol: torch.nn.Module, obs, h_masks, burn_in_length: int) -> dict:
    """Policy parameters over a window, the state detached after burn-in."""
    hs = pol.net.init_hs(obs.shape[1])
    # without autograd (the targets) there is nothing to detach: one pass
    if not 0 < burn_in_length < len(obs) or not torch.is_grad_enabled():
        return pol.pd_params(obs, hs=hs, h_masks=h_masks)
    first = pol.pd_params(obs[:burn_in_length], hs=hs, h_masks=h_masks[:burn_in_length])
    hs = pol.hs  # stored, detached, by the call above
    rest = pol.pd_params(obs[burn_in_length:], hs=hs, h_masks=h_masks[burn_in_length:])
    return {k: torch.cat([first[k], rest[k]]) for k in first}


def _qs(qf: torch.nn.Module, obs, acs, h_masks, burn_in_length: int) -> torch.Tensor:
    """``Q(h_t, acs_t)`` over a window, ``acs`` ``(S, T, B, ...)`` -> ``(S, T, B)``.

    The S action samples are folded into the batch axis: one recurrent pass of S * B columns.
    """
    samples, steps, batch_size = acs.shape[:3]
    obs = obs.repeat(1, samples, *([1] * (obs.dim() - 2)))
    h_masks = h_masks.repeat(1, samples)
    acs = acs.transpose(0, 1).reshape(steps, samples * batch_size, *acs.shape[3:])
    hs = qf.net.init_hs(samples * batch_size)
    if not 0 < burn_in_length < steps or not torch.is_grad_enabled():
        qs = qf(obs, acs, hs=hs, h_masks=h_masks)[0]
    else:
        b = burn_in_length
        first, info = qf(obs[:b], acs[:b], hs=hs, h_masks=h_masks[:b])
        rest = qf(obs[b:], acs[b:], hs=detach_hs(info["hs"]), h_masks=h_masks[b:])[0]
        qs = torch.cat([first, rest])
    return qs.reshape(steps, samples, batch_size).transpose(0, 1)


def _min_qs(qfs, obs, acs, h_masks, burn_in_length) -> torch.Tensor:
    return torch.stack([_qs(qf, obs, acs, h_masks, burn_in_length) for qf in qfs]).amin(0)


def extended_obs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations ``(T + 1, B, ...)`` with each window's final ``next_obs`` after its last
    real step (windows never cross an episode boundary, so ``next_obs[t] = obs[t + 1]``
    inside), and ``h_masks`` extended by a row of zeros."""
    obs, next_obs = batch["obs"], batch["next_obs"]
    lengths = batch["out_masks"].sum(0).long()
    cols = torch.arange(obs.shape[1], device=obs.device)
    ext = torch.cat([obs, torch.zeros_like(obs[:1])])
    ext[lengths, cols] = next_obs[lengths - 1, cols]
    h_masks = torch.cat([batch["h_masks"], torch.zeros_like(batch["h_masks"][:1])])
    return ext, h_masks


def r2d2_sac_targets(
    pol: torch.nn.Module,
    targ_qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    batch: Batch,
    gamma: float,
    burn_in_length: int,
    sampling: int = 1,
) -> torch.Tensor:
    """Soft targets ``r_t + gamma (1 - term_t) E[min_i Q'_i(h_{t+1}, a') - alpha log pi(a')]``,
    ``(T, B)`` without gradient; ``a' ~ pi(.|h_{t+1})``, ``sampling`` draws per step."""
    with torch.no_grad(), batch_share.drawing_for(batch):
        obs, h_masks = extended_obs(batch)
        params = _pol_params(pol, obs, h_masks, burn_in_length)
        acs, llh = sample_acs(pol, params, sampling)
        next_qs = _min_qs(targ_qfs, obs, acs, h_masks, burn_in_length)[:, 1:]
        next_vs = torch.mean(next_qs - torch.exp(log_alpha) * llh[:, 1:], dim=0)
        return bellman_target(batch["rews"], batch["terms"], next_vs, gamma)


def r2d2_q_loss(
    qfs: Sequence[torch.nn.Module],
    batch: Batch,
    targets: torch.Tensor,
    masks: torch.Tensor,
    burn_in_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over ``qfs`` of ``0.5 * sum(w m (Q - y)^2) / sum(m)``, ``w = is_weights`` (B,).

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    td : torch.Tensor
        ``(T, B)`` mean of ``|Q_i - y|`` over the Q functions, detached (new priorities).
    """
    weights = batch.get("is_weights")
    weights = masks if weights is None else masks * weights.to(masks.dtype)[None, :]
    acs = batch["acs"].unsqueeze(0)
    loss, td = 0.0, 0.0
    for qf in qfs:
        err = _qs(qf, batch["obs"], acs, batch["h_masks"], burn_in_length)[0] - targets
        loss = loss + 0.5 * _masked_mean(err**2, weights, batch)
        td = td + err.detach().abs()
    return loss, td / len(qfs)


def r2d2_sac_pol(
    pol: torch.nn.Module,
    qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    batch: Batch,
    masks: torch.Tensor,
    burn_in_length: int,
    sampling: int = 1,
    reparam: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy loss ``E[alpha log pi(a|h_t) - min_i Q_i(h_t, a)]`` over the trained steps.

    Returns the scalar loss and the ``(sampling, T, B)`` log-likelihoods, detached.
    """
    alpha = torch.exp(log_alpha).detach()
    params = _pol_params(pol, batch["obs"], batch["h_masks"], burn_in_length)
    with batch_share.drawing_for(batch):
        acs, llh = sample_acs(pol, params, sampling, reparam)
    if reparam:
        qs = _min_qs(qfs, batch["obs"], acs, batch["h_masks"], burn_in_length)
        per_step = torch.mean(alpha * llh - qs, dim=0)
    else:
        with torch.no_grad():
            qs = _min_qs(qfs, batch["obs"], acs, batch["h_masks"], burn_in_length)
            advs = alpha * llh - qs
            if sampling > 1:
                advs = advs - advs.mean(dim=0, keepdim=True)
        per_step = torch.mean(llh * advs, dim=0)
    return _masked_mean(per_step, masks, batch), llh.detach()


def r2d2_sac_alpha(
    log_alpha: torch.Tensor,
    llh: torch.Tensor,
    masks: torch.Tensor,
    target_ent: float,
    batch: Batch | None = None,
) -> torch.Tensor:
    """Temperature loss ``-E[log_alpha (log pi + target_ent)]`` over the trained steps
    (``batch``: the sequence batch, for a rank's share of a ``Traj(ddp=True)`` minibatch)."""
    per_step = torch.mean(llh + target_ent, dim=0).detach()
    return -_masked_mean(log_alpha * per_step, masks, batch)


def r2d2_sac_losses(
    pol: torch.nn.Module,
    qfs: Sequence[torch.nn.Module],
    targ_qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    batch: Batch,
    gamma: float,
    sampling: int = 1,
    burn_in_length: int = 40,
    reparam: bool = True,
    normalize: bool = False,
    eps: float = 1e-6,
) -> tuple[Batch, torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """All R2D2-SAC losses on one sequence batch; also callable as ``lf.r2d2_sac(...)``.

    Parameters
    ----------
    pol, qfs, targ_qfs, log_alpha, gamma, sampling, reparam
        As :func:`machina.loss_functional.sac.sac_losses`, with recurrent networks.
    batch : dict of str to torch.Tensor
        A ``Traj.random_batch_rnn`` batch: ``obs``, ``acs``, ``rews``, ``next_obs``,
        ``terms`` (or ``dones``), ``h_masks`` and ``out_masks``, leading (T, B).
    burn_in_length : int
        Leading steps that only warm up the hidden states.
    normalize, eps
        Accepted for machina 0.x's signature; the likelihood-ratio estimator uses the mean
        of the ``sampling`` draws as baseline instead.

    Returns
    -------
    batch : dict
        The batch given.
    pol_loss : torch.Tensor
        Scalar.
    qf_losses : list of torch.Tensor
        Per Q function, ``0.5 * E[(Q_i - y)^2]`` over the trained steps (``is_weights`` too
        when the batch has them).
    alpha_loss : torch.Tensor
        Scalar, target entropy ``-ac_dim``.
    td_losses : torch.Tensor
        ``(T, B)``: ``Q - y`` averaged over the Q functions, detached (meaningful where
        :func:`train_masks` is 1).
    """
    given = batch
    batch = with_terms(batch)
    targets = r2d2_sac_targets(pol, targ_qfs, log_alpha, batch, gamma, burn_in_length, sampling)
    masks = train_masks(batch, burn_in_length)
    weights = batch.get("is_weights")
    weights = masks if weights is None else masks * weights.to(masks.dtype)[None, :]
    acs = batch["acs"].unsqueeze(0)
    qf_losses, errs = [], []
    for qf in qfs:
        err = _qs(qf, batch["obs"], acs, batch["h_masks"], burn_in_length)[0] - targets
        qf_losses.append(0.5 * _masked_mean(err**2, weights, batch))
        errs.append(err.detach())
    pol_loss, llh = r2d2_sac_pol(
        pol, qfs, log_alpha, batch, masks, burn_in_length, sampling, reparam
    )
    target_ent = default_target_entropy(pol.action_space)
    alpha_loss = r2d2_sac_alpha(log_alpha, llh, masks, target_ent, batch)
    return given, pol_loss, qf_losses, alpha_loss, torch.stack(errs).mean(dim=0)


make_module_callable(__name__, r2d2_sac_losses)
