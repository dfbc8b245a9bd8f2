"""Tanh-squashed Gaussian distribution (SAC's; Haarnoja et al., 2018, appendix C)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, check_sample
from machina.pds.gaussian_pd import GaussianPd

_LOG2 = math.log(2.0)
# Gauss-Hermite nodes and weights for E[f(u)], u ~ N(m, s^2) (entropy of the squashing).
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(32)


def _log_det_tanh(u: torch.Tensor) -> torch.Tensor:
    """``log(1 - tanh(u)^2)`` elementwise, stable for large ``|u|``."""
    return 2.0 * (_LOG2 - u - nn.functional.softplus(-2.0 * u))


class TanhGaussianPd(BasePd):
    """``ac = tanh(u)`` with ``u ~ N(atanh(mean), exp(log_std)^2)``, independent per dim.

    Parameters are ``dict(mean=(..., d), log_std=(..., d))``: ``mean`` in ``(-1, 1)`` is the
    median ``tanh(loc)`` of each action dim (the deterministic action), ``log_std`` the log
    standard deviation of ``u`` before squashing. Parameterising by the median keeps the net
    contract of Gaussian policies (a mean in ``[-1, 1]``, e.g. through ``tanh``) and makes
    ``atanh(mean)`` the net's own pre-``tanh`` output.

    The log-likelihood includes the change of variables, ``log N(u) - sum log(1 - tanh(u)^2)``;
    :meth:`sample_with_llh` computes it from the pre-squash sample ``u``, exact even where
    ``tanh(u)`` rounds to ±1 in float32. KL is the Gaussians' KL (KL is invariant under the
    same bijection); the entropy adds ``E[sum log(1 - tanh(u)^2)]`` to the Gaussian's, by
    32-point Gauss-Hermite quadrature: within ~1e-8 nats per action dim for ``log_std <= 0``,
    but ~2e-3 at ``log_std = 1`` and ~1e-1 at 2 (the integrand, ``-2 log cosh u``, bends
    within ``|u| < 1``, narrow against such a spread of ``u``).
    """

    param_keys = ("mean", "log_std")
    #: ``mean`` is clipped to ``±(1 - EPS)`` before ``atanh`` (|loc| <= 7.25).
    EPS = 1e-6

    def __init__(self) -> None:
        self._gaussian = GaussianPd()

    def _loc(self, params: Params, name: str = "params") -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self._get(params, name)
        loc = torch.atanh(mean.clamp(-1.0 + self.EPS, 1.0 - self.EPS))
        return loc, log_std.expand_as(loc)

    def sample_with_llh(
        self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-likelihood.

        Returns
        -------
        ac : torch.Tensor
            ``(*sample_shape, *lead, d)`` in ``(-1, 1)``; gradients flow to the parameters.
        llh : torch.Tensor
            ``(*sample_shape, *lead)``, computed from the pre-squash sample.
        """
        loc, log_std = self._loc(params)
        gauss = dict(mean=loc, log_std=log_std)
        u = self._gaussian.sample(gauss, sample_shape)
        llh = self._gaussian.llh(u, gauss) - _log_det_tanh(u).sum(dim=-1)
        return torch.tanh(u), llh

    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Reparameterised sample ``(*sample_shape, *lead, d)`` in ``(-1, 1)``."""
        return self.sample_with_llh(params, sample_shape)[0]

    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Log-density of squashed actions ``x (*lead, d)``, summed over ``d``: ``(*lead,)``.

        ``x`` is clipped to ``±(1 - eps)`` first, ``eps`` the parameters' machine epsilon, so that
        actions at the bounds stay finite while every recorded action short of them keeps its
        own pre-squash value (float32 resolves ``|u|`` up to ~8.3; ``EPS`` would cut at 7.25).
        """
        loc, log_std = self._loc(params)
        check_sample(x, loc, "TanhGaussianPd")
        # the parameters' precision, which the actions were drawn at: the same llh whether
        # they were stored as float32 or float64
        eps = torch.finfo(loc.dtype).eps
        u = torch.atanh(x.to(loc.dtype).clamp(-1.0 + eps, 1.0 - eps))
        gauss = dict(mean=loc, log_std=log_std)
        return self._gaussian.llh(u, gauss) - _log_det_tanh(u).sum(dim=-1)

    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """KL(p || q) summed over ``d``: ``(*lead,)`` (that of the Gaussians before tanh)."""
        p_loc, p_log_std = self._loc(p_params, "p_params")
        q_loc, q_log_std = self._loc(q_params, "q_params")
        return self._gaussian.kl_pq(
            dict(mean=p_loc, log_std=p_log_std), dict(mean=q_loc, log_std=q_log_std)
        )

    def ent(self, params: Params) -> torch.Tensor:
        """Differential entropy of the squashed actions summed over ``d``: ``(*lead,)``."""
        loc, log_std = self._loc(params)
        nodes = torch.as_tensor(_GH_NODES, dtype=loc.dtype, device=loc.device)
        weights = torch.as_tensor(_GH_WEIGHTS, dtype=loc.dtype, device=loc.device)
        u = loc[..., None] + math.sqrt(2.0) * torch.exp(log_std)[..., None] * nodes
        expected_log_det = (_log_det_tanh(u) * weights).sum(dim=-1) / math.sqrt(math.pi)
        gauss_ent = self._gaussian.ent(dict(mean=loc, log_std=log_std))
        return gauss_ent + expected_log_det.sum(dim=-1)
