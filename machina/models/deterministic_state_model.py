"""Deterministic state dynamics model: predicts the change of the observation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.models.base import BaseModel
from machina.utils.recurrent import HiddenState
from machina.utils.spaces import check_flat_space, check_space


class HasDataMap(Protocol):
    """What :meth:`DeterministicSModel.update_stats` reads from a ``machina.traj.Traj``: its
    columns (``machina.traj`` builds on this package, so it is not imported here)."""

    @property
    def data_map(self) -> Mapping[str, Any]: ...


#: floor of the standard deviations the model divides by (a constant dimension stays finite)
STD_EPS = 1e-6
_STAT_NAMES = ("mean_obs", "std_obs", "mean_acs", "std_acs", "mean_d_obs", "std_d_obs")


class DeterministicSModel(BaseModel):
    """Dynamics model ``(obs, acs) -> next_obs - obs`` on a net that works in normalised units.

    The net sees standardised observations and actions and predicts the standardised
    observation change (delta), as in Nagabandi et al., 2018, "Neural Network Dynamics for
    Model-Based Deep Reinforcement Learning with Model-Free Fine-Tuning" (arXiv:1708.02596):
    every dimension weighs alike in the loss, whatever its scale. The statistics are buffers
    of this module (saved in its ``state_dict`` and travelling with it to sampler workers);
    :meth:`update_stats` sets them from data, and ``machina.algos.mpc.train_dm`` does so by
    default. Until then they are the identity (means 0, standard deviations 1).

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        One-dimensional, ``(ob_dim,)``.
    action_space : gymnasium.spaces.Box
        One-dimensional, ``(ac_dim,)``. Actions are in the sampling policy's action space,
        as episodes store them in ``acs`` (real units for ``RandomPol`` and ``MPCPol`` by
        default).
    net : torch.nn.Module
        ``net(obs, acs) -> d_obs`` of shapes ``(B, ob_dim)``, ``(B, ac_dim)`` ->
        ``(B, ob_dim)`` (e.g. ``machina.nets.model.ModelNet``); when recurrent
        ``net(obs, acs, hs, h_masks) -> (d_obs (T, B, ob_dim), hs)`` with ``init_hs``.
    rnn : bool
        Whether ``net`` is recurrent.
    data_parallel : bool
        Accepted for machina 0.x's signature; only False is supported.
    parallel_dim : int
        Accepted for machina 0.x's signature; unused.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        net: nn.Module,
        rnn: bool = False,
        data_parallel: bool = False,
        parallel_dim: int = 0,
    ) -> None:
        owner = type(self).__name__
        if data_parallel:
            raise ValueError(
                f"data_parallel: {owner} supports only False, given {data_parallel!r}; "
                "wrap the net in torch.nn.DataParallel yourself"
            )
        for name, space in (
            ("observation_space", observation_space),
            ("action_space", action_space),
        ):
            check_space(name, space, gym.spaces.Box, owner)
            check_flat_space(name, space, owner)
        super().__init__(observation_space, action_space, net, rnn)
        ob_dim, ac_dim = observation_space.shape[0], action_space.shape[0]
        for name, dim, fill in zip(
            _STAT_NAMES, (ob_dim, ob_dim, ac_dim, ac_dim, ob_dim, ob_dim), (0.0, 1.0) * 3
        ):
            self.register_buffer(name, torch.full((dim,), fill))
        self._check_model_net()

    def _check_model_net(self) -> None:
        outputs = self._check_net((self.action_space.shape,))
        ob_dim = self.observation_space.shape[0]
        if len(outputs) != 1 or tuple(outputs[0].shape[-1:]) != (ob_dim,):
            raise ValueError(
                f"net: {type(self).__name__} needs a net returning the observation change "
                f"(..., {ob_dim}), got outputs of shapes {[tuple(o.shape) for o in outputs]}"
            )

    def stats(self) -> dict[str, torch.Tensor]:
        """The normalisation statistics, ``(ob_dim,)`` or ``(ac_dim,)`` each."""
        return {name: getattr(self, name) for name in _STAT_NAMES}

    @torch.no_grad()
    def update_stats(self, data: HasDataMap | Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Set the normalisation statistics to the means and standard deviations of ``data``.

        Parameters
        ----------
        data : Traj or dict
            A registered ``Traj`` or a batch with ``obs (N, ob_dim)``, ``acs (N, ac_dim)`` and
            ``next_obs (N, ob_dim)``.

        Returns
        -------
        dict of str to torch.Tensor
            The new statistics (see :meth:`stats`).
        """
        columns = getattr(data, "data_map", data)
        missing = [key for key in ("obs", "acs", "next_obs") if key not in columns]
        if missing:
            raise KeyError(
                f"data: {type(self).__name__}.update_stats needs 'obs', 'acs' and 'next_obs', "
                f"missing {missing}"
            )
        device = self.mean_obs.device

        def column(key: str, dim: int) -> torch.Tensor:
            x = columns[key]
            x = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
            return x.to(device=device, dtype=torch.float32).reshape(-1, dim)

        ob_dim, ac_dim = self.mean_obs.shape[0], self.mean_acs.shape[0]
        obs, acs = column("obs", ob_dim), column("acs", ac_dim)
        d_obs = column("next_obs", ob_dim) - obs
        if obs.shape[0] < 2:
            raise ValueError(f"data: update_stats needs at least 2 steps, got {obs.shape[0]}")
        new = {}
        for prefix, x in (("obs", obs), ("acs", acs), ("d_obs", d_obs)):
            mean, std = x.mean(0), x.std(0).clamp_min(STD_EPS)
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
                # checked before any is written: NaN statistics would make every prediction NaN
                key = "next_obs" if prefix == "d_obs" else prefix
                raise ValueError(
                    f"data: '{key}' gives non-finite statistics (NaN or inf values); "
                    f"{type(self).__name__}.update_stats left the model's statistics unchanged"
                )
            new[prefix] = mean, std
        for prefix, (mean, std) in new.items():
            getattr(self, f"mean_{prefix}").copy_(mean)
            getattr(self, f"std_{prefix}").copy_(std)
        return self.stats()

    def _acs_to_tensor(self, acs: Any, obs: torch.Tensor) -> torch.Tensor:
        acs = torch.as_tensor(np.asarray(acs) if isinstance(acs, list | tuple) else acs)
        acs = acs.to(device=obs.device, dtype=torch.float32)
        expected = tuple(obs.shape[:-1]) + tuple(self.action_space.shape)
        if acs.shape != expected and acs.ndim == len(expected) - 1:
            acs = acs.unsqueeze(0)  # one action for one observation, as obs was unsqueezed
        if tuple(acs.shape) != expected:
            raise ValueError(
                f"acs: {type(self).__name__} expects shape {expected} to match obs "
                f"{tuple(obs.shape)}, got {tuple(acs.shape)}"
            )
        return acs

    def normalized_delta(
        self, obs: Any, acs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> tuple[torch.Tensor, HiddenState | None]:
        """The net's prediction: the standardised observation change.

        Arguments as :meth:`forward`. Returns ``(d_obs_normalized (*lead, ob_dim), hs)``,
        differentiable; what the dynamics loss compares with :meth:`normalize_delta`.
        """
        obs = self._obs_to_tensor(obs)
        acs = self._acs_to_tensor(acs, obs)
        obs_n = (obs - self.mean_obs) / self.std_obs
        acs_n = (acs - self.mean_acs) / self.std_acs
        outputs, new_hs = self._call_net(obs_n, hs, h_masks, extra=(acs_n,))
        return outputs[0], new_hs

    def normalize_delta(self, d_obs: torch.Tensor) -> torch.Tensor:
        """Standardise an observation change ``(*lead, ob_dim)``."""
        return (d_obs - self.mean_d_obs) / self.std_d_obs

    def forward(
        self, obs: Any, acs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Predicted observation change ``next_obs - obs`` in real units.

        Parameters
        ----------
        obs : array-like
            ``(B, ob_dim)``, or ``(T, B, ob_dim)`` when recurrent.
        acs : array-like
            ``(*lead, ac_dim)`` with the leading dims of ``obs``.
        hs : HiddenState, optional
            Recurrent only: initial state; default the stored one.
        h_masks : array-like, optional
            Recurrent only: ``(T, B)`` or ``(T, B, 1)``, 1 where an episode starts.

        Returns
        -------
        d_obs : torch.Tensor
            ``(*lead, ob_dim)``.
        info : dict
            ``mean``: ``d_obs``; ``hs``: the new hidden state (None when feed-forward).
        """
        d_norm, new_hs = self.normalized_delta(obs, acs, hs, h_masks)
        d_obs = d_norm * self.std_d_obs + self.mean_d_obs
        return d_obs, dict(mean=d_obs, hs=new_hs)

    def predict_next_obs(self, obs: Any, acs: Any) -> torch.Tensor:
        """``obs + forward(obs, acs)``: the predicted next observation, feed-forward only."""
        obs = self._obs_to_tensor(obs)
        return obs + self(obs, acs)[0]

    def _planned_delta(
        self, obs: torch.Tensor, acs: torch.Tensor, hs: HiddenState, h_masks: torch.Tensor
    ) -> tuple[torch.Tensor, HiddenState | None]:
        """:meth:`normalized_delta` for planners' rollouts, recurrent ones included: tensors
        as given, no conversion or checks (a rollout the model diverges on holds NaN or inf,
        which the planner drops; the check would blame the observation)."""
        obs_n = (obs - self.mean_obs) / self.std_obs
        acs_n = (acs - self.mean_acs) / self.std_acs
        outputs, new_hs = self._call_net(obs_n, hs, h_masks, extra=(acs_n,))
        return outputs[0], new_hs

    def _predict(self, obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
        """Fast feed-forward path for planners: no conversion or checks, ``(N, ob_dim)``."""
        obs_n = (obs - self.mean_obs) / self.std_obs
        acs_n = (acs - self.mean_acs) / self.std_acs
        return obs + self.net(obs_n, acs_n) * self.std_d_obs + self.mean_d_obs
