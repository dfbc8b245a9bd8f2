"""BasePrePro: observations normalised by the running mean and variance of those seen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium
import numpy as np

from machina.prepro.running_mean_std import RunningMeanStd, check_finite, tensor_state
from machina.utils.tensors import to_numpy


class BasePrePro:
    """Normalise observations: ``clip((ob - mean) / (std + eps), -clip, clip)``.

    ``mean`` and ``std`` are those of every raw observation given to :meth:`update` (exact,
    not an exponential average); before any, the normalisation is the identity (then
    clipped).

    Use with a sampler: pass the prepro as ``EpiSampler(env, pol, prepro=prepro)``. It is
    sent to the workers with the policy at every ``sample`` call, so during one call every
    observation is normalised with the same statistics, and the episodes store the
    normalised ``obs`` / ``next_obs`` that the policy saw, which is what the estimators and
    algorithms then use unchanged. The sampler also keeps the raw observation each step
    acted on, in ``e_is["raw_obs"]``: right after each ``sample``, fold them into the
    statistics with :meth:`update_with_epis`::

        prepro = BasePrePro(env.observation_space)
        sampler = EpiSampler(env, pol, prepro=prepro)
        epis = sampler.sample(pol, max_steps=2048)
        prepro.update_with_epis(epis)

    The statistics are always those of raw observations: the normalised ones cannot stand
    in for them, as clipping loses the values beyond ``clip`` (with the default clip, the
    first batch normalised by the identity would otherwise pin the mean to the bound).

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        The raw observations' space.
    normalize_ob : bool
        False: :meth:`prepro` returns observations unchanged (as float32).
    clip : float or None
        Bound of the normalised values; None: no clipping.
    eps : float
        Added to the standard deviation, so constant features do not divide by zero.
    """

    #: :meth:`prepro` maps a batch ``(N, *ob_shape)`` as N observations: the sampler calls it
    #: once per step on all environments' observations.
    batched = True

    def __init__(
        self,
        observation_space: gymnasium.spaces.Box,
        normalize_ob: bool = True,
        clip: float | None = 5.0,
        eps: float = 1e-8,
    ) -> None:
        if not isinstance(observation_space, gymnasium.spaces.Box):
            raise ValueError(
                f"observation_space: expected a gymnasium.spaces.Box, given {observation_space}"
            )
        if clip is not None and not clip > 0:
            raise ValueError(f"clip: expected a positive number or None, given {clip!r}")
        if not eps > 0:
            raise ValueError(f"eps: expected a positive number, given {eps!r}")
        self.observation_space = observation_space
        self.normalize_ob = bool(normalize_ob)
        self.clip = None if clip is None else float(clip)
        self.eps = float(eps)
        self.ob_rms = RunningMeanStd(observation_space.shape)

    @property
    def ob_rm(self) -> np.ndarray:
        """Running mean of the observations, (*ob_shape); zeros before any update."""
        return self.ob_rms.mean

    @property
    def ob_rv(self) -> np.ndarray:
        """Running variance of the observations, (*ob_shape); ones before any update."""
        if self.ob_rms.count == 0:
            return np.ones(self.ob_rms.shape)
        return self.ob_rms.var

    def _check(self, obs: Any, name: str) -> np.ndarray:
        obs = to_numpy(obs, bfloat16_as_float32=True).astype(np.float64, copy=False)
        shape = self.ob_rms.shape
        if obs.shape[obs.ndim - len(shape) :] != shape:
            raise ValueError(f"{name}: expected shape (..., *{shape}), given {obs.shape}")
        return obs

    def prepro(self, ob: np.ndarray) -> np.ndarray:
        """Normalise observations.

        Parameters
        ----------
        ob : (..., *ob_shape) array
            One observation or a batch of them.

        Returns
        -------
        (..., *ob_shape) float32
        """
        ob = self._check(ob, "ob")
        if not self.normalize_ob:
            return ob.astype(np.float32)
        out = (ob - self.ob_rm) / (np.sqrt(self.ob_rv) + self.eps)
        if self.clip is not None:
            out = np.clip(out, -self.clip, self.clip)
        return out.astype(np.float32)

    __call__ = prepro

    def unprepro(self, ob: np.ndarray) -> np.ndarray:
        """Invert :meth:`prepro` with the current statistics: exact for values within
        ``(-clip, clip)``; a clipped value comes back as the bound's raw value.

        Parameters
        ----------
        ob : (..., *ob_shape) array of normalised observations

        Returns
        -------
        (..., *ob_shape) float64
        """
        ob = self._check(ob, "ob")
        if not self.normalize_ob:
            return ob
        return ob * (np.sqrt(self.ob_rv) + self.eps) + self.ob_rm

    def update(self, obs: np.ndarray) -> None:
        """Fold raw observations into the statistics.

        Parameters
        ----------
        obs : (N, *ob_shape) or (*ob_shape) array
            Finite values.

        Raises
        ------
        ValueError
            When ``obs`` has a NaN or inf, or would make the statistics overflow float64;
            they are then unchanged.
        """
        obs = self._check(obs, "obs")
        self.ob_rms._update(obs.reshape((-1, *self.ob_rms.shape)), "obs")

    def update_ob_rms(self, ob: np.ndarray) -> None:
        """Fold raw observations into the running mean and variance (machina 0.x's name;
        the same as :meth:`update`).

        The statistics are exact over every observation folded in, so they do not depend on
        how the observations are split into calls.

        Parameters
        ----------
        ob : (*ob_shape) or (N, *ob_shape) array
        """
        self.update(ob)

    def update_with_epis(self, epis: Iterable[Mapping[str, Any]]) -> None:
        """Fold into the statistics the raw observations of episodes sampled with a prepro.

        ``EpiSampler(..., prepro=...)`` stores, next to the normalised ``obs``, the raw
        observation each step acted on in ``e_is["raw_obs"]``; those are folded in, so the
        statistics equal numpy's mean and variance over every raw observation sampled (the
        first of each episode and every later one the policy acted on; an episode's final
        ``next_obs`` is not counted). Episodes may come from any number of ``sample`` calls,
        in any order.

        Parameters
        ----------
        epis : iterable of dict
            Episodes with ``e_is["raw_obs"]`` (T, *ob_shape).

        Raises
        ------
        KeyError
            When an episode has no ``e_is["raw_obs"]`` (it was not sampled with a prepro):
            fold raw observations in with :meth:`update` instead.
        """
        raw = []
        for i, epi in enumerate(epis):
            e_is = epi.get("e_is") or {}
            if "raw_obs" not in e_is:
                raise KeyError(
                    f"epis: episode {i} has no e_is['raw_obs'], the raw observations that "
                    "EpiSampler(..., prepro=...) keeps; for episodes sampled without a prepro "
                    "(raw obs), call prepro.update(np.concatenate([epi['obs'] ...]))"
                )
            name = f"epis: episode {i}'s e_is['raw_obs']"
            raw.append(self._check(e_is["raw_obs"], name))
            check_finite(raw[-1], name)
        if raw:
            self.update(np.concatenate(raw, axis=0))

    def prepro_with_update(self, ob: np.ndarray) -> np.ndarray:
        """Fold raw observations into the statistics, then normalise them (machina 0.x's
        name; for a loop that steps the environment itself: with a sampler, normalise with
        ``EpiSampler(..., prepro=...)`` and fold in with :meth:`update_with_epis`).

        Parameters
        ----------
        ob : (*ob_shape) or (N, *ob_shape) array

        Returns
        -------
        Same shape, float32
        """
        self.update(ob)
        return self.prepro(ob)

    def state_dict(self) -> dict[str, Any]:
        """The statistics, for saving with the policy (``torch.save``; ``torch.load`` reads
        them back with its default ``weights_only=True``).

        Returns
        -------
        dict
            ``mean`` and ``var`` (*ob_shape) float64 tensors (copies) and the sample
            ``count`` (int).
        """
        return tensor_state(self.ob_rms.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the statistics saved by :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            ``mean`` and ``var`` (*ob_shape), numpy arrays or tensors, and the sample ``count``.
        """
        self.ob_rms.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"BasePrePro(shape={self.ob_rms.shape}, count={self.ob_rms.count}, "
            f"clip={self.clip}, normalize_ob={self.normalize_ob})"
        )
