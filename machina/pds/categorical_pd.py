"""Categorical distribution over ``n`` classes."""

import math

import torch

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, safe_log
from machina.utils import batch_share


def sample_categorical(pi: torch.Tensor, sample_shape: torch.Size) -> torch.Tensor:
    """Draw class indices from probabilities ``pi (*lead, n)``: ``(*sample_shape, *lead)`` int64.

    Inverse-CDF sampling: one uniform draw ``u`` in ``[0, total)`` per sample and the index of
    the first class whose cumulative probability exceeds ``u``. On the small batches a sampler
    steps with this costs about 2/3 of ``torch.multinomial`` with the reshapes it needs around
    it (1/2 with 6 classes and 64 rows). Exact: class ``k`` is drawn with probability
    ``pi[k] / total``. Classes of probability 0 (e.g. padding) are never drawn: their
    cumulative value equals the previous one, and ``u < total`` strictly (``u`` is a float
    ``r < 1`` times ``total``, which rounds below ``total``; the cumulative sum is sequential
    on the CPU, so it never decreases).

    Raises
    ------
    ValueError
        If ``pi`` holds a negative, NaN or infinite entry or a row summing to 0 (what
        ``torch.multinomial`` rejects too), naming the first bad row.
    """
    sample_shape = torch.Size(sample_shape)
    pi = pi.detach()
    n = pi.shape[-1]
    if pi.numel() == 0:
        if n == 0 and pi.shape[:-1].numel():
            raise invalid_pi_error(pi)
        # no rows, yet the draw: an empty share of a Traj(ddp=True) minibatch draws the whole
        # minibatch's uniforms, so that its generator moves as the other ranks' (nothing here)
        batch_share.rand(pi.shape[:-1] + (sample_shape.numel(),), dtype=pi.dtype, device=pi.device)
        return torch.zeros(sample_shape + pi.shape[:-1], dtype=torch.int64, device=pi.device)
    cdf = torch.cumsum(pi, dim=-1)
    # every sample of one row searches that row's cdf: the samples go last, (*lead, S)
    u = batch_share.rand(
        pi.shape[:-1] + (sample_shape.numel(),), dtype=cdf.dtype, device=cdf.device
    ).contiguous()  # a time-major share's is a strided view; searchsorted copies those
    u *= cdf[..., -1:]
    # the number of classes with cdf <= u: the first class whose cdf exceeds u
    draws = torch.searchsorted(cdf, u, right=True)
    if sample_shape:
        draws = draws.movedim(-1, 0).reshape(sample_shape + pi.shape[:-1])
    else:
        draws = draws.squeeze(-1)
    low, high = torch.aminmax(pi)
    # NaN fails both comparisons; a row summing to 0 gives u = 0 and the index n
    if not (low.item() >= 0.0 and high.item() < math.inf and draws.max().item() < n):
        raise invalid_pi_error(pi)
    return draws


def invalid_pi_error(pi: torch.Tensor) -> ValueError:
    """The error for probabilities ``pi (*lead, n)`` that are not a distribution over the last
    dim (non-finite, negative, or a row summing to 0); it names the first bad row.

    Shared by ``CategoricalPd.sample`` and the sampler's numpy copy of a categorical policy
    (``BasePol.numpy_inference``), so both raise the same message.
    """
    rows = pi.reshape(-1, pi.shape[-1])
    bad = ~torch.isfinite(rows).all(-1) | (rows < 0).any(-1) | (rows.sum(-1) <= 0)
    first = int(torch.nonzero(bad)[0]) if bool(bad.any()) else 0
    return ValueError(
        "pi: expected probabilities (finite, >= 0, each row summing to > 0) over the last "
        f"dim, got shape {tuple(pi.shape)} with {int(bad.sum())} bad row(s), the first "
        f"(row {first} of the flattened leading dims): {rows[first].tolist()}"
    )


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
