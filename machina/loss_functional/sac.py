"""Soft actor-critic losses (Haarnoja et al., 2018, "SAC: Algorithms and Applications").

The policy's actions are drawn from its own distribution ``pol.pd``, the one the sampler drew
the recorded ``acs`` from, so that the loss and the data agree:

- ``TanhGaussianPol`` (recommended): actions are ``tanh(u)``; samples and their
  log-likelihoods come from ``pd.sample_with_llh``, which applies the ``log(1 - tanh(u)^2)``
  correction to the pre-squash sample ``u``.
- ``GaussianPol``: ``acs`` are the unclipped Gaussian samples
  and the environment clips them to the bounds. SAC is then exact for that environment (one
  whose action space is all of R^d), with the Gaussian's log-likelihood; Q functions are fitted
  to the unclipped actions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from machina.loss_functional._common import Batch, make_module_callable
from machina.loss_functional._common import expand_samples as _expand
from machina.loss_functional.q import bellman_target
from machina.utils import batch_share
from machina.utils.ends import terminated
from machina.utils.spaces import default_target_entropy


def sample_acs(
    pol: torch.nn.Module, params: dict, sampling: int = 1, reparam: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``sampling`` actions per state from ``pol.pd`` with their log-likelihoods.

    Parameters
    ----------
    pol : torch.nn.Module
        A stochastic policy; its ``pd`` may offer ``sample_with_llh`` (squashed Gaussians).
    params : dict
        Distribution parameters with leading ``(B,)``, from ``pol.pd_params``.
    sampling : int
        Samples per state.
    reparam : bool
        Reparameterised samples (gradients flow through the actions); otherwise the actions
        carry no gradient and only the log-likelihood does.

    Returns
    -------
    acs : torch.Tensor
        ``(sampling, B, *ac_shape)``.
    llh : torch.Tensor
        ``(sampling, B)``.
    """
    pd, shape = pol.pd, torch.Size([sampling])
    if reparam:
        if hasattr(pd, "sample_with_llh"):
            return pd.sample_with_llh(params, shape)
        acs = pd.sample(params, shape)
        return acs, pd.llh(acs, params)
    with torch.no_grad():
        acs = pd.sample(params, shape)
    return acs, pd.llh(acs, params)


def _min_q(qfs: Sequence[torch.nn.Module], obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
    return torch.stack([qf(obs, acs)[0] for qf in qfs]).min(dim=0).values


def sac_targets(
    pol: torch.nn.Module,
    targ_qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    batch: Batch,
    gamma: float,
    sampling: int = 1,
) -> torch.Tensor:
    """Soft Q target ``r + gamma * (1 - term) * E[min_i Q'_i(s', a') - alpha * log pi(a'|s')]``.

    The expectation over ``a' ~ pi(.|s')`` is a mean over ``sampling`` draws. Returns ``(B,)``
    without gradient.
    """
    with torch.no_grad(), batch_share.drawing_for(batch):
        next_obs = batch["next_obs"]
        acs, llh = sample_acs(pol, pol.pd_params(next_obs), sampling)
        next_qs = _min_q(targ_qfs, _expand(next_obs, sampling), acs)
        next_vs = torch.mean(next_qs - torch.exp(log_alpha) * llh, dim=0)
        return bellman_target(batch["rews"], batch["terms"], next_vs, gamma)


def sac_pol(
    pol: torch.nn.Module,
    qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    batch: Batch,
    sampling: int = 1,
    reparam: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy loss ``E[alpha * log pi(a|s) - min_i Q_i(s, a)]``, ``a ~ pi(.|s)``.

    With ``reparam`` the gradient flows through the reparameterised actions; otherwise it is
    the likelihood-ratio estimator ``E[log pi(a|s) * (alpha * log pi(a|s) - Q(s, a))]``, with
    the mean over the ``sampling`` draws of a state as baseline when ``sampling > 1``.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    llh : torch.Tensor
        ``(sampling, B)`` log-likelihoods of the drawn actions, detached (for
        :func:`sac_alpha`).
    """
    obs = batch["obs"]
    alpha = torch.exp(log_alpha).detach()
    with batch_share.drawing_for(batch):
        acs, llh = sample_acs(pol, pol.pd_params(obs), sampling, reparam)
    if reparam:
        qs = _min_q(qfs, _expand(obs, sampling), acs)
        loss = batch_share.share_mean(alpha * llh - qs, batch, axis=1)
    else:
        with torch.no_grad():
            advs = alpha * llh - _min_q(qfs, _expand(obs, sampling), acs)
            if sampling > 1:
                advs = advs - advs.mean(dim=0, keepdim=True)
        loss = batch_share.share_mean(llh * advs, batch, axis=1)
    return loss, llh.detach()


def sac_alpha(
    log_alpha: torch.Tensor, llh: torch.Tensor, target_ent: float, batch: Batch | None = None
) -> torch.Tensor:
    """Temperature loss ``-E[log_alpha * (log pi(a|s) + target_ent)]``, a scalar.

    Its gradient raises ``alpha`` while the policy's entropy ``-E[log pi]`` is below
    ``target_ent`` and lowers it above. ``llh`` is ``(sampling, B)`` (or ``(B,)``); ``batch``,
    the batch it was drawn for, makes a rank's share of a ``Traj(ddp=True)`` minibatch
    average as the whole minibatch.
    """
    return -batch_share.share_mean(log_alpha * (llh + target_ent).detach(), batch, axis=-1)


def with_terms(batch: Batch) -> Batch:
    """``batch`` with ``terms``: its own, or where only ``dones`` were recorded those of
    ``machina.utils.ends.terminated`` (every ``dones`` end a termination unless ``truncs`` says
    truncated)."""
    if "terms" in batch or "dones" not in batch:
        return batch
    return batch_share.keep_share({**batch, "terms": terminated(batch)}, batch)


def sac_losses(
    pol: torch.nn.Module,
    qfs: Sequence[torch.nn.Module],
    targ_qfs: Sequence[torch.nn.Module],
    log_alpha: torch.Tensor,
    batch: Batch,
    gamma: float,
    sampling: int = 1,
    reparam: bool = True,
    normalize: bool = False,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """All three SAC losses on one batch; also callable as ``lf.sac(...)`` (machina 0.x).

    Parameters
    ----------
    pol : torch.nn.Module
        Stochastic policy.
    qfs, targ_qfs : sequence of torch.nn.Module
        Q functions and their targets.
    log_alpha : torch.Tensor
        Log temperature, a scalar.
    batch : dict of str to torch.Tensor
        ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms`` (or ``dones``), leading (B,).
    gamma : float
        Discount.
    sampling : int
        Actions drawn per state.
    reparam : bool
        Reparameterised policy gradient (see :func:`sac_pol`).
    normalize : bool
        Without ``reparam``: standardise the likelihood-ratio weights of the batch.
    eps : float
        Added to their standard deviation.

    Returns
    -------
    pol_loss : torch.Tensor
        Scalar (:func:`sac_pol`).
    qf_losses : list of torch.Tensor
        ``0.5 * E[(Q_i - y)^2]`` per Q function against :func:`sac_targets`.
    alpha_loss : torch.Tensor
        Scalar (:func:`sac_alpha` with target entropy ``-ac_dim``).
    """
    batch = with_terms(batch)
    targets = sac_targets(pol, targ_qfs, log_alpha, batch, gamma, sampling)
    qf_losses = [
        0.5 * batch_share.share_mean((qf(batch["obs"], batch["acs"])[0] - targets) ** 2, batch)
        for qf in qfs
    ]
    if reparam or not normalize:
        pol_loss, llh = sac_pol(pol, qfs, log_alpha, batch, sampling, reparam)
    else:
        obs = batch["obs"]
        with batch_share.drawing_for(batch):
            acs, llh = sample_acs(pol, pol.pd_params(obs), sampling, reparam=False)
        with torch.no_grad():
            weights = torch.exp(log_alpha) * llh - _min_q(qfs, _expand(obs, sampling), acs)
            mean, std = batch_share.whole_mean_std(weights, batch)
            weights = (weights - mean) / (std + eps)
        pol_loss = batch_share.share_mean(llh * weights, batch, axis=1)
        llh = llh.detach()
    target_ent = default_target_entropy(pol.action_space)
    return pol_loss, qf_losses, sac_alpha(log_alpha, llh, target_ent, batch)


make_module_callable(__name__, sac_losses)
