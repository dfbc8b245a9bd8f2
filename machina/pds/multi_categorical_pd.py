"""Product of ``k`` independent categorical distributions (for MultiDiscrete actions)."""

import torch

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, safe_log
from machina.pds.categorical_pd import sample_categorical
from machina.utils.aliases import keyword_aliases


class MultiCategoricalPd(BasePd):
    """Independent categoricals with parameters ``dict(pi=(..., k, n))`` (machina 0.x's
    ``dict(pis=...)`` too).

    Sub-actions with fewer than ``n`` classes carry zero probability on the padding classes.
    """

    param_keys = ("pi",)

    def _get(self, params: Params, name: str = "params") -> tuple[torch.Tensor, ...]:
        # machina 0.x named the probabilities "pis": accepted when "pi" is absent
        if "pi" not in params and "pis" in params:
            return (params["pis"],)
        return super()._get(params, name)

    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Draw one class index per sub-action.

        Parameters
        ----------
        params : dict
            ``pi (*lead, k, n)``.
        sample_shape : torch.Size
            Extra leading sample dims.

        Returns
        -------
        torch.Tensor
            ``(*sample_shape, *lead, k)`` int64.
        """
        (pi,) = self._get(params)
        return sample_categorical(pi, sample_shape)

    @keyword_aliases(xs="x")
    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Log-probability of ``x (*lead, k)``, summed over ``k``: ``(*lead,)``."""
        (pi,) = self._get(params)
        index = x.long().unsqueeze(-1)
        pi = pi.expand(*x.shape, pi.shape[-1])
        return torch.sum(safe_log(torch.gather(pi, -1, index)).squeeze(-1), dim=-1)

    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """KL(p || q) summed over ``k``: ``(*lead,)``."""
        (p_pi,) = self._get(p_params, "p_params")
        (q_pi,) = self._get(q_params, "q_params")
        return torch.sum(p_pi * (safe_log(p_pi) - safe_log(q_pi)), dim=(-2, -1))

    def ent(self, params: Params) -> torch.Tensor:
        """Entropy summed over ``k``: ``(*lead,)``."""
        (pi,) = self._get(params)
        return -torch.sum(pi * safe_log(pi), dim=(-2, -1))
