"""Diagonal Gaussian distribution."""

import math

import torch

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, check_sample
from machina.utils import batch_share

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class GaussianPd(BasePd):
    """Diagonal Gaussian with parameters ``dict(mean=(..., d), log_std=(..., d))``.

    ``log_std`` may be any shape that broadcasts to ``mean`` (e.g. a state-independent ``(d,)``).
    """

    param_keys = ("mean", "log_std")

    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Reparameterised sample (gradients flow to ``mean`` and ``log_std``).

        Parameters
        ----------
        params : dict
            ``mean (*lead, d)``, ``log_std`` broadcastable to ``mean``.
        sample_shape : torch.Size
            Extra leading sample dims.

        Returns
        -------
        torch.Tensor
            ``(*sample_shape, *lead, d)``.
        """
        mean, log_std = self._get(params)
        sample_shape = torch.Size(sample_shape)
        noise = batch_share.randn(
            sample_shape + mean.shape, lead=len(sample_shape), dtype=mean.dtype, device=mean.device
        )
        return mean + torch.exp(log_std) * noise

    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Log-density of ``x (*lead, d)`` summed over ``d``: ``(*lead,)``."""
        mean, log_std = self._get(params)
        check_sample(x, mean, "GaussianPd")
        z = (x - mean) * torch.exp(-log_std)
        log_std = log_std.expand_as(z)
        return torch.sum(-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI, dim=-1)

    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """Closed-form KL(p || q) summed over ``d``: ``(*lead,)``."""
        p_mean, p_log_std = self._get(p_params, "p_params")
        q_mean, q_log_std = self._get(q_params, "q_params")
        var_ratio = torch.exp(2.0 * (p_log_std - q_log_std))
        mean_term = ((p_mean - q_mean) * torch.exp(-q_log_std)).pow(2)
        kl = 0.5 * (var_ratio + mean_term - 1.0) + q_log_std - p_log_std
        return torch.sum(kl, dim=-1)

    def ent(self, params: Params) -> torch.Tensor:
        """Differential entropy summed over ``d``: ``(*lead,)``."""
        mean, log_std = self._get(params)
        return torch.sum(log_std.expand_as(mean) + 0.5 + _LOG_SQRT_2PI, dim=-1)
