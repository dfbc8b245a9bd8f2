"""Categorical distribution over ``n`` classes."""

import torch

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, safe_log


def sample_categorical(pi: torch.Tensor, sample_shape: torch.Size) -> torch.Tensor:
    """Draw class indices from probabilities ``pi (*lead, n)``: ``(*sample_shape, *lead)`` int64."""
    sample_shape = torch.Size(sample_shape)
    n_samples = max(sample_shape.numel(), 1)
    flat = pi.detach().reshape(-1, pi.shape[-1])
    draws = torch.multinomial(flat, n_samples, replacement=True)  # (L, S)
    return draws.T.reshape(sample_shape + pi.shape[:-1])


class CategoricalPd(BasePd):
    """Categorical distribution with parameters ``dict(pi=(..., n))`` (probabilities)."""

    param_keys = ("pi",)

    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Draw class indices.

        Parameters
        ----------
        params : dict
            ``pi (*lead, n)``, probabilities summing to 1 over the last dim.
        sample_shape : torch.Size
            Extra leading sample dims.

        Returns
        -------
        torch.Tensor
            ``(*sample_shape, *lead)`` int64.
        """
        (pi,) = self._get(params)
        return sample_categorical(pi, sample_shape)

    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Log-probability of class indices ``x (*lead,)``: ``(*lead,)``."""
        (pi,) = self._get(params)
        index = x.long().unsqueeze(-1).expand(*x.shape, 1)
        return safe_log(torch.gather(pi.expand(*x.shape, pi.shape[-1]), -1, index)).squeeze(-1)

    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """KL(p || q): ``(*lead,)``."""
        (p_pi,) = self._get(p_params, "p_params")
        (q_pi,) = self._get(q_params, "q_params")
        return torch.sum(p_pi * (safe_log(p_pi) - safe_log(q_pi)), dim=-1)

    def ent(self, params: Params) -> torch.Tensor:
        """Entropy: ``(*lead,)``."""
        (pi,) = self._get(params)
        return -torch.sum(pi * safe_log(pi), dim=-1)
