"""Stochastic value gradient losses (Heess et al., 2015, "Learning Continuous Control Policies
by Stochastic Value Gradients", arXiv:1510.09142).

Both variants draw reparameterised actions ``a = g(s, eta)`` from the stochastic policy and
follow the gradient of a learned value through them:

- SVG(0): through a state-action value, ``grad E[Q(s, g(s, eta))]`` (:func:`ag`), with ``Q``
  fitted by an expected-SARSA Bellman loss (:func:`bellman`).
- SVG(1): through one step of a learned dynamics model and a state value,
  ``grad E[r(s, a) + gamma * V(s + f(s, a))]`` (:func:`svg1_pol`), with ``V`` fitted off-policy
  by importance-weighted TD(0) (:func:`svg1_vf`, the paper's SVG(1)-ER) and the model
  ``f(s, a) -> s' - s`` by regression (:func:`delta_regression`).

Actions are in the policy's action space (``[-1, 1]`` for normalised Box policies), the one
the sampler records as ``acs``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from machina.loss_functional._common import Batch, old_params
from machina.loss_functional._common import expand_samples as _expand
from machina.loss_functional.q import bellman_target, q_regression
from machina.loss_functional.sac import sample_acs, with_terms
from machina.utils import batch_share

#: ``rew_fn(obs (..., *ob_shape), acs (..., d)) -> rews (...)``, differentiable in ``acs``
RewFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def svg_targets(
    targ_pol: torch.nn.Module,
    targ_qf: torch.nn.Module,
    batch: Batch,
    gamma: float,
    sampling: int = 1,
) -> torch.Tensor:
    """Expected-SARSA target ``r + gamma * (1 - term) * E_{a' ~ targ_pol(s')}[Q'(s', a')]``.

    The expectation is a mean over ``sampling`` draws. Returns ``(B,)`` without gradient.
    """
    with torch.no_grad(), batch_share.drawing_for(batch):
        next_obs = batch["next_obs"]
        acs, _ = sample_acs(targ_pol, targ_pol.pd_params(next_obs), sampling)
        next_qs = targ_qf(_expand(next_obs, sampling), acs)[0].mean(dim=0)
        return bellman_target(batch["rews"], batch["terms"], next_qs, gamma)


def bellman(
    qf: torch.nn.Module,
    targ_qf: torch.nn.Module,
    targ_pol: torch.nn.Module,
    batch: Batch,
    gamma: float,
    continuous: bool = True,
    deterministic: bool = True,
    sampling: int = 1,
    reduction: str = "elementwise_mean",
) -> torch.Tensor:
    """Bellman loss ``0.5 * E[(Q(s, a) - y)^2]`` against :func:`svg_targets`, a scalar.

    Parameters
    ----------
    qf, targ_qf : torch.nn.Module
        Q function and its target, ``qf(obs, acs) -> (qs (B,), info)``.
    targ_pol : torch.nn.Module
        Target policy whose actions at ``next_obs`` the target averages over.
    batch : dict of str to torch.Tensor
        ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``, leading ``(B,)``.
    gamma : float
        Discount.
    continuous : bool
        Only True (continuous actions).
    deterministic : bool
        Unused: how next actions are drawn follows ``targ_pol.pd``.
    sampling : int
        Next actions drawn per state.
    reduction : {"elementwise_mean", "mean", "sum", "none"}
        How the per-step losses ``0.5 * (Q - y)^2`` (B,) are reduced.

    Notes
    -----
    The positional order is machina 0.x's. An int in ``continuous``'s place is read as
    ``sampling`` of the order ``(qf, targ_qf, targ_pol, batch, gamma, sampling)``.
    """
    if isinstance(continuous, int) and not isinstance(continuous, bool):
        continuous, sampling = True, continuous  # (qf, targ_qf, targ_pol, batch, gamma, sampling)
    if not continuous:
        raise ValueError("continuous: bellman supports only continuous action spaces (True)")
    if reduction not in ("elementwise_mean", "mean", "sum", "none"):
        raise ValueError(
            f"reduction: expected 'elementwise_mean', 'mean', 'sum' or 'none', got {reduction!r}"
        )
    batch = with_terms(batch)
    targets = svg_targets(targ_pol, targ_qf, batch, gamma, sampling)
    if reduction in ("elementwise_mean", "mean"):
        return q_regression(qf, batch, targets)
    per_step = 0.5 * (qf(batch["obs"], batch["acs"])[0] - targets) ** 2
    return batch_share.share_sum(per_step, batch) if reduction == "sum" else per_step


def ag(
    pol: torch.nn.Module,
    qf: torch.nn.Module,
    batch: Batch,
    sampling: int = 1,
    no_noise: bool = False,
) -> torch.Tensor:
    """SVG(0)'s action-gradient loss ``-E[Q(s, a)]``, ``a ~ pol(.|s)`` reparameterised.

    Gradients reach the policy through the actions (mean and standard deviation alike).
    Returns a scalar. ``no_noise`` is accepted for machina 0.x's signature: a
    ``DeterministicActionNoisePol``'s distribution is its noise-free action already (the
    noise is exploration, added only when acting).
    """
    obs = batch["obs"]
    with batch_share.drawing_for(batch):
        acs, _ = sample_acs(pol, pol.pd_params(obs), sampling, reparam=True)
    return -batch_share.share_mean(qf(_expand(obs, sampling), acs)[0], batch, axis=1)


def predict_delta(dm: torch.nn.Module, obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
    """``dm(obs, acs)``, the predicted ``next_obs - obs``; a ``(delta, ...)`` tuple is unpacked."""
    out = dm(obs, acs)
    delta = out[0] if isinstance(out, tuple | list) else out
    if delta.shape != obs.shape:
        raise ValueError(
            f"dm: expected a model returning next_obs - obs of the observations' shape "
            f"{tuple(obs.shape)}, got {tuple(delta.shape)}"
        )
    return delta


def delta_regression(dm: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Dynamics-model loss ``0.5 * E[|dm(s, a) - (s' - s)|^2]`` (summed over dims), a scalar."""
    delta = predict_delta(dm, batch["obs"], batch["acs"])
    err = torch.sum((delta - (batch["next_obs"] - batch["obs"])) ** 2, dim=-1)
    return 0.5 * batch_share.share_mean(err, batch)


def _values(vf: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    return vf(obs)[0]


def svg1_vf(
    vf: torch.nn.Module,
    targ_vf: torch.nn.Module,
    pol: torch.nn.Module,
    batch: Batch,
    gamma: float,
    max_weight: float = 5.0,
) -> torch.Tensor:
    """Importance-weighted TD(0) loss of ``V`` for the current policy, from replayed steps.

    ``0.5 * E[w * (V(s) - (r + gamma * (1 - term) * V'(s')))^2]`` with
    ``w = min(pi(a|s) / mu(a|s), max_weight)``, ``mu`` the sampling policy whose parameters
    the batch records (agent info ``a_is``, e.g. ``mean`` and ``log_std``); the weights are
    normalised to mean 1 over the batch so the step size does not drift with them.

    Returns a scalar.
    """
    with torch.no_grad():
        new = pol.pd_params(batch["obs"])
        log_w = pol.pd.llh(batch["acs"], new) - pol.pd.llh(batch["acs"], old_params(new, batch))
        weights = torch.exp(log_w).clamp(max=max_weight)
        weights = weights / batch_share.whole_mean(weights, batch).clamp_min(1e-8)
        targets = bellman_target(
            batch["rews"], batch["terms"], _values(targ_vf, batch["next_obs"]), gamma
        )
    return 0.5 * batch_share.share_mean(weights * (_values(vf, batch["obs"]) - targets) ** 2, batch)


def svg1_pol(
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    dm: torch.nn.Module,
    rew_fn: RewFn,
    batch: Batch,
    gamma: float,
    sampling: int = 1,
) -> torch.Tensor:
    """SVG(1)'s loss ``-E[r(s, a) + gamma * (1 - term) * V(s + f(s, a))]``, ``a ~ pol(.|s)``.

    The gradient flows through the reparameterised action into the reward function and,
    through the dynamics model ``f`` (``dm``), into the state value. ``term`` is the replayed
    step's: the model does not predict terminations. Returns a scalar.

    Parameters
    ----------
    pol : torch.nn.Module
        Reparameterisable stochastic policy (``TanhGaussianPol`` or ``GaussianPol``).
    vf : torch.nn.Module
        State value, ``vf(obs) -> (vs (B,), info)``.
    dm : torch.nn.Module
        Dynamics model ``dm(obs, acs) -> next_obs - obs`` (or a tuple starting with it).
    rew_fn : callable
        ``rew_fn(obs, acs) -> rews``, differentiable in ``acs`` (a known reward, or a learned
        reward net), over leading dims ``(sampling, B)``.
    batch : dict of str to torch.Tensor
        ``obs`` and ``terms``, leading ``(B,)``.
    gamma : float
        Discount.
    sampling : int
        Actions drawn per state.
    """
    obs = _expand(batch["obs"], sampling)
    with batch_share.drawing_for(batch):
        acs, _ = sample_acs(pol, pol.pd_params(batch["obs"]), sampling, reparam=True)
    next_obs = obs + predict_delta(dm, obs, acs)
    not_term = 1.0 - batch["terms"].to(next_obs.dtype)
    returns = rew_fn(obs, acs) + gamma * not_term * _values(vf, next_obs)
    return -batch_share.share_mean(returns, batch, axis=1)
