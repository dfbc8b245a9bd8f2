"""Point mass at ``mean`` (for deterministic policies such as DDPG's)."""

import torch

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, check_sample


class DeterministicPd(BasePd):
    """Point mass with parameters ``dict(mean=(..., d))``.

    It is treated as a discrete distribution with all its mass on ``mean``: the log-likelihood is
    ``0`` at ``mean`` and ``-inf`` elsewhere, the entropy is ``0``, and KL is ``0`` between equal
    means and ``inf`` otherwise. These values are consistent with one another, and keep entropy
    bonuses finite, unlike the differential entropy of a Dirac delta (``-inf``).
    """

    param_keys = ("mean",)

    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Return ``mean`` broadcast to ``(*sample_shape, *lead, d)`` (gradients flow to it)."""
        (mean,) = self._get(params)
        return mean.expand(torch.Size(sample_shape) + mean.shape)

    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """``0`` where ``x (*lead, d)`` equals ``mean`` in all dims, else ``-inf``: ``(*lead,)``."""
        (mean,) = self._get(params)
        check_sample(x, mean, "DeterministicPd")
        equal = torch.all(x == mean, dim=-1)
        return torch.where(equal, 0.0, -torch.inf).to(mean.dtype)

    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """``0`` where the means agree, ``inf`` elsewhere: ``(*lead,)``."""
        (p_mean,) = self._get(p_params, "p_params")
        (q_mean,) = self._get(q_params, "q_params")
        equal = torch.all(p_mean == q_mean, dim=-1)
        return torch.where(equal, 0.0, torch.inf).to(p_mean.dtype)

    def ent(self, params: Params) -> torch.Tensor:
        """Zeros of shape ``(*lead,)``."""
        (mean,) = self._get(params)
        return mean.new_zeros(mean.shape[:-1])
