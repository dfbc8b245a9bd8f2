"""Base class of the probability distributions used by policies."""

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch

Params = Mapping[str, torch.Tensor]
#: default ``sample_shape``: one sample per parameter set (torch.Size is immutable).
NO_SAMPLE_SHAPE = torch.Size()


class BasePd(ABC):
    """A family of distributions whose parameters come as a dict of tensors.

    Distribution objects are stateless: every method takes the parameters, so one object serves
    every batch. Parameters and samples share leading dims, ``(B,)`` or ``(T, B)``; every method
    works elementwise over them and reduces only over the action dims.
    """

    #: keys a parameter dict must hold, checked by :meth:`_get`.
    param_keys: tuple[str, ...] = ()

    def _get(self, params: Params, name: str = "params") -> tuple[torch.Tensor, ...]:
        """Return ``params[key]`` for each key in :attr:`param_keys`, with a clear KeyError."""
        missing = [key for key in self.param_keys if key not in params]
        if missing:
            raise KeyError(
                f"{name}: {type(self).__name__} needs keys {list(self.param_keys)}, "
                f"got keys {sorted(params)} (missing {missing})"
            )
        return tuple(params[key] for key in self.param_keys)

    @abstractmethod
    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Draw samples of shape ``(*sample_shape, *lead, *event_shape)``."""

    @abstractmethod
    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Log-likelihood of ``x``, summed over the action dims: ``(*lead,)``."""

    @abstractmethod
    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """KL(p || q), summed over the action dims: ``(*lead,)``."""

    @abstractmethod
    def ent(self, params: Params) -> torch.Tensor:
        """Entropy, summed over the action dims: ``(*lead,)``."""


def check_sample(x: torch.Tensor, mean: torch.Tensor, pd: str, event_dims: int = 1) -> None:
    """A ValueError unless ``x (*sample, *lead, d)`` lines up with ``mean``'s trailing
    ``(*lead, d)`` (``event_dims`` = 2 for a mixture's ``(*lead, K, d)``): an action of
    another rank, e.g. ``(B,)`` for ``(B, 1)``, would broadcast into a wrong sum."""
    lead = mean.shape[: mean.dim() - event_dims]
    want = (*lead, mean.shape[-1])
    if x.dim() < len(want) or x.shape[-1] != want[-1]:
        raise ValueError(
            f"x: {pd}.llh expected actions of shape (*sample, {', '.join(map(str, want))}) "
            f"matching the parameters' {tuple(mean.shape)}, got {tuple(x.shape)}"
        )


def safe_log(probs: torch.Tensor) -> torch.Tensor:
    """``log(probs)`` with zero probabilities mapped to a large negative finite number.

    Clamping at the smallest normal number (rather than adding a constant) leaves every
    valid probability exact, while ``0 * log 0`` terms still evaluate to 0 instead of NaN.
    """
    return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
