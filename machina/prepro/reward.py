"""RewardNormalizer: rewards scaled by the running standard deviation of discounted returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.signal import lfilter

from machina.prepro.running_mean_std import RunningMeanStd, check_finite, tensor_state


class RewardNormalizer:
    """Scale rewards by the standard deviation of the running discounted return.

    The scheme of stable-baselines3's ``VecNormalize(norm_reward=True)`` and of the original
    PPO code (openai/baselines ``VecNormalize``), which rl-zoo uses for PPO on the PyBullet
    tasks: along each episode the discounted return so far, ``R_t = gamma * R_{t-1} + r_t``
    (``R_{-1} = 0``), is folded into running statistics, and rewards are divided by their
    standard deviation (not centred, so the sign of a reward is kept), then clipped.

    The rewards are scaled on the learner's side, on whole episodes, after sampling: the
    sampler (and its worker processes) never need the statistics, and the episodes keep
    their raw ``rews`` for reporting returns::

        rew_norm = RewardNormalizer(gamma=0.99)
        epis = sampler.sample(pol, max_steps=2048)
        rew_norm.update_with_epis(epis)
        train_epis = rew_norm.normalize_epis(epis)   # same episodes, scaled ``rews``

    Parameters
    ----------
    gamma : float
        Discount of the running return, in [0, 1]; usually the algorithm's.
    clip : float or None
        Bound of the scaled rewards (VecNormalize: 10); None: no clipping.
    eps : float
        Added to the variance, so a constant zero return does not divide by zero.
    """

    def __init__(self, gamma: float = 0.99, clip: float | None = 10.0, eps: float = 1e-8) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma: expected a number in [0, 1], given {gamma!r}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip: expected a positive number or None, given {clip!r}")
        if not eps > 0:
            raise ValueError(f"eps: expected a positive number, given {eps!r}")
        self.gamma = float(gamma)
        self.clip = None if clip is None else float(clip)
        self.eps = float(eps)
        self.ret_rms = RunningMeanStd(())

    @property
    def scale(self) -> float:
        """The divisor ``sqrt(var(R) + eps)``; 1 before any update."""
        if self.ret_rms.count == 0:
            return 1.0
        return float(np.sqrt(self.ret_rms.var + self.eps))

    def discounted_returns(self, rews: np.ndarray) -> np.ndarray:
        """Running discounted returns of one episode, ``R_t = gamma * R_{t-1} + r_t``.

        Parameters
        ----------
        rews : (T,) array

        Returns
        -------
        (T,) float64
        """
        rews = np.asarray(rews, dtype=np.float64)
        if rews.ndim != 1:
            raise ValueError(f"rews: expected shape (T,), given {rews.shape}")
        # IIR filter y_t = r_t + gamma * y_{t-1}: the recursion in C, not a Python loop.
        return lfilter([1.0], [1.0, -self.gamma], rews)

    def update(self, rews: np.ndarray) -> None:
        """Fold the running discounted returns of one whole episode's rewards (T,) in.

        Raises
        ------
        ValueError
            When ``rews`` has a NaN or inf, or its returns would make the statistics overflow
            float64; they are then unchanged.
        """
        check_finite(np.asarray(rews, dtype=np.float64), "rews", "rewards")
        self.ret_rms._update(self.discounted_returns(rews), "rews (their discounted returns)")

    def update_with_epis(self, epis: Iterable[Mapping[str, Any]]) -> None:
        """Fold the running discounted returns of every step of ``epis`` into the statistics.

        Parameters
        ----------
        epis : iterable of dict
            Whole episodes with raw ``rews`` (T,), finite.

        Raises
        ------
        ValueError
            When an episode's ``rews`` has a NaN or inf, or the returns would make the
            statistics overflow float64; they are then unchanged.
        """
        rets = []
        for i, epi in enumerate(epis):
            rews = _rews(epi, i)
            check_finite(np.asarray(rews, dtype=np.float64), f"epis: episode {i}'s rews", "rewards")
            rets.append(self.discounted_returns(rews))
        if rets:
            self.ret_rms._update(np.concatenate(rets), "epis: rews (their discounted returns)")

    def normalize(self, rews: np.ndarray) -> np.ndarray:
        """Scale (and clip) rewards with the current statistics.

        Parameters
        ----------
        rews : (...) array

        Returns
        -------
        (...) float32
        """
        out = np.asarray(rews, dtype=np.float64) / self.scale
        if self.clip is not None:
            out = np.clip(out, -self.clip, self.clip)
        return out.astype(np.float32)

    __call__ = normalize

    def normalize_epis(self, epis: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """New episode dicts whose ``rews`` are scaled; every other entry is shared, and the
        given episodes are left unchanged.

        Parameters
        ----------
        epis : iterable of dict
            Episodes with ``rews`` (T,).

        Returns
        -------
        list of dict
        """
        return [{**epi, "rews": self.normalize(_rews(epi, i))} for i, epi in enumerate(epis)]

    def state_dict(self) -> dict[str, Any]:
        """The statistics: ``mean`` and ``var`` of the running returns (0-d float64 tensors,
        which ``torch.load``'s default ``weights_only=True`` reads back) and their ``count``."""
        return tensor_state(self.ret_rms.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the statistics of :meth:`state_dict` (numpy arrays or tensors)."""
        self.ret_rms.load_state_dict(dict(state))  # it converts tensors (bfloat16 too)

    def __repr__(self) -> str:
        return (
            f"RewardNormalizer(gamma={self.gamma}, count={self.ret_rms.count}, "
            f"scale={self.scale:.4g}, clip={self.clip})"
        )


def _rews(epi: Mapping[str, Any], i: int) -> np.ndarray:
    if "rews" not in epi:
        raise KeyError(f"epis: episode {i} has no 'rews'")
    rews = np.asarray(epi["rews"])
    if rews.ndim != 1:
        raise ValueError(f"epis: episode {i}'s rews: expected shape (T,), given {rews.shape}")
    return rews
