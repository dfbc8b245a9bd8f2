"""Model predictive control by random shooting with a learned dynamics model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.models import DeterministicSModel
from machina.pols.base import ActResult, BasePol
from machina.utils.recurrent import HiddenState, map_hs
from machina.utils.spaces import check_flat_space

RewFunc = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


class MPCPol(BasePol):
    """Random-shooting MPC: the first action of the best of ``n_samples`` random plans.

    At each call, for every observation in the batch, ``n_samples`` action sequences of
    length ``horizon`` are drawn uniformly from the action space and rolled out through the
    dynamics model; the summed predicted rewards rank them, and the first action of the best
    one is taken (Nagabandi et al., 2018, arXiv:1708.02596). All observations, samples and
    steps of one call run as ``horizon`` batched model calls on ``(B * n_samples)`` rows.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        One-dimensional, ``(ob_dim,)``.
    action_space : gymnasium.spaces.Box
        One-dimensional and bounded, ``(ac_dim,)``.
    net : DeterministicSModel or torch.nn.Module
        The dynamics model, which carries its normalisation statistics (recommended); or
        a bare dynamics net ``net(obs_n, acs_n) -> d_obs_n`` (machina 0.x's form) on
        inputs standardised with ``mean_obs`` .. ``std_acs`` that predicts the change of the
        standardised observation. Kept as :attr:`net` (a ``DeterministicSModel``).
    rew_func : callable
        ``rew_func(next_obs (N, ob_dim), acs (N, ac_dim)) -> rews (N,)`` in torch, on real
        observations and environment actions; called with two arguments, so a
        ``rew_func(next_obs, acs, mean_obs=0., std_obs=1., ...)`` (machina 0.x's) works too.
    n_samples : int
        Action sequences per observation.
    horizon : int
        Steps per action sequence.
    mean_obs, std_obs, mean_acs, std_acs : float or array-like
        Only with a bare net: the statistics its inputs were standardised with.
    rnn : bool
        Whether the dynamics model is recurrent (``net(obs, acs, hs, h_masks) -> (d_obs, hs)``
        with ``init_hs``). The policy then keeps the model's hidden state per environment:
        plans roll out from it, and after each step it advances with the action taken
        (reset where an episode starts). A recurrent ``DeterministicSModel`` as ``net``
        makes the policy recurrent too.
    normalize_ac : bool
        False (default): ``ac`` and the recorded ``acs`` are in real units, like
        ``RandomPol``'s by default, so both kinds of episodes train one model. True: ``ac``
        is in ``[-1, 1]`` and scaled to the bounds; pair it with
        ``RandomPol(normalize_ac=True)``.

    Notes
    -----
    ``a_i`` is an empty dict and :attr:`pd` is None, as for ``RandomPol``, so that warm-up
    and MPC episodes share their keys and aggregate into one ``Traj``.
    :meth:`deterministic_ac_real` plans the same way: random
    shooting has no mode. The sampling draws from torch's RNG, which ``EpiSampler`` seeds
    per worker.
    """

    action_space_types = (gym.spaces.Box,)
    uses_net = False

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        net: nn.Module,
        rew_func: RewFunc,
        n_samples: int = 1000,
        horizon: int = 20,
        mean_obs: Any = 0.0,
        std_obs: Any = 1.0,
        mean_acs: Any = 0.0,
        std_acs: Any = 1.0,
        rnn: bool = False,
        normalize_ac: bool = False,
    ) -> None:
        rnn = bool(rnn or getattr(net, "rnn", False))
        if not callable(rew_func):
            raise ValueError(
                f"rew_func: expected a callable (next_obs, acs) -> rews, got {rew_func!r}"
            )
        model = self._as_model(
            observation_space, action_space, net, rnn, mean_obs, std_obs, mean_acs, std_acs
        )
        super().__init__(observation_space, action_space, model, rnn=rnn, normalize_ac=normalize_ac)
        self.rew_func = rew_func
        self.n_samples = _positive_int("n_samples", n_samples)
        self.horizon = _positive_int("horizon", horizon)
        self._check_rew_func()

    @staticmethod
    def _as_model(observation_space, action_space, net, rnn, *stats) -> DeterministicSModel:
        if isinstance(net, DeterministicSModel):
            if any(not np.all(np.asarray(s) == d) for s, d in zip(stats, (0.0, 1.0, 0.0, 1.0))):
                raise ValueError(
                    "mean_obs: MPCPol takes the statistics from the DeterministicSModel given "
                    "as net; pass mean_obs .. std_acs only with a bare net"
                )
            if net.rnn != rnn:
                raise ValueError(
                    f"rnn: MPCPol got rnn={rnn} with a DeterministicSModel of rnn={net.rnn}"
                )
            if tuple(net.observation_space.shape) != tuple(observation_space.shape) or tuple(
                net.action_space.shape
            ) != tuple(action_space.shape):
                raise ValueError(
                    f"net: the model's spaces {net.observation_space}, {net.action_space} do "
                    f"not match observation_space {observation_space}, action_space {action_space}"
                )
            return net
        model = DeterministicSModel(observation_space, action_space, net, rnn=rnn)
        mean_obs, std_obs, mean_acs, std_acs = stats
        with torch.no_grad():
            for name, value in (
                ("mean_obs", mean_obs),
                ("std_obs", std_obs),
                ("mean_acs", mean_acs),
                ("std_acs", std_acs),
                ("std_d_obs", std_obs),  # the bare net predicts the standardised change
            ):
                buffer = getattr(model, name)
                value = torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(-1)
                buffer.copy_(
                    value.expand_as(buffer) if value.numel() == 1 else value.view_as(buffer)
                )
        return model

    def _check_action_space(self, action_space: gym.Space) -> None:
        super()._check_action_space(action_space)
        check_flat_space("action_space", action_space, type(self).__name__)
        if not action_space.is_bounded("both"):
            raise ValueError(
                f"action_space: MPCPol samples actions uniformly and needs finite bounds, "
                f"got {action_space!r}"
            )

    def _check_rew_func(self) -> None:
        ob_dim, ac_dim = self.observation_space.shape[0], self.action_space.shape[0]
        obs, acs = torch.zeros(2, ob_dim), torch.zeros(2, ac_dim)
        try:
            rews = torch.as_tensor(self.rew_func(obs, acs))
        except Exception as error:
            raise ValueError(
                f"rew_func: could not call it on next_obs (2, {ob_dim}) and acs (2, {ac_dim}): "
                f"{error}"
            ) from error
        if rews.numel() != 2:
            raise ValueError(
                f"rew_func: expected one reward per row, shape (2,), for next_obs (2, {ob_dim}) "
                f"and acs (2, {ac_dim}), got shape {tuple(rews.shape)}"
            )

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        if self.rnn:
            return self._act_recurrent(obs, hs, h_masks)
        obs = self._obs_to_tensor(obs)
        lead, ob_dim = obs.shape[:-1], obs.shape[-1]
        flat = obs.reshape(-1, ob_dim)
        batch, n = flat.shape[0], self.n_samples
        with torch.no_grad():
            plans = self._sample_plans(batch * n, flat.device)  # (H, B * n, ac_dim)
            # row b * n + j: plan j of observation b
            states = flat.repeat_interleave(n, dim=0)
            total = flat.new_zeros(batch * n)
            for ac in plans:
                states = self.net._predict(states, ac)
                total += torch.as_tensor(self.rew_func(states, self._ac_to_real(ac))).reshape(-1)
            best = _best_plans(total.view(batch, n))
            ac = plans[0].view(batch, n, -1)[torch.arange(batch, device=flat.device), best]
        ac = ac.reshape(*lead, -1)
        return self._ac_real_torch(ac), ac, {}

    def _sample_plans(self, rows: int, device: torch.device) -> torch.Tensor:
        ac_dim = self.action_space.shape[0]
        uniform = torch.rand(self.horizon, rows, ac_dim, device=device)
        if self.normalize_ac:
            return uniform * 2.0 - 1.0
        low, high = self._ac_low.to(device), self._ac_high.to(device)
        return low + uniform * (high - low)

    # ---------------------------------------------------------------- recurrent models
    def _act_recurrent(self, obs: Any, hs: HiddenState | None, h_masks: Any) -> ActResult:
        """Plan step by step through ``obs (T, B, ob_dim)``, carrying the model's state."""
        obs = self._obs_to_tensor(obs)
        masks = self._h_masks_to_tensor(h_masks, obs)
        steps, batch = obs.shape[:2]
        net = self.net.net
        if hs is None:
            hs = self.hs if self.hs is not None and self._hs_batch_size == batch else None
        if hs is None:
            hs = net.init_hs(batch)
        dim = _batch_dim(net)
        acs = []
        with torch.no_grad():
            for t in range(steps):
                hs = _scale_rows(hs, 1.0 - masks[t, :, 0], dim)  # episode starts: fresh state
                ac = self._plan_recurrent(obs[t], hs, dim)
                zeros = obs.new_zeros(1, batch, 1)
                _, hs = self.net.normalized_delta(obs[t][None], ac[None], hs, zeros)
                acs.append(ac)
        self.hs, self._hs_batch_size = hs, batch
        ac = torch.stack(acs)
        return self._ac_real_torch(ac), ac, {}

    def _plan_recurrent(self, obs: torch.Tensor, hs: HiddenState, dim: int) -> torch.Tensor:
        """The first action of the best plan for each row of ``obs (B, ob_dim)`` from the
        model state ``hs`` (its batch axis ``dim`` of size B)."""
        batch, n = obs.shape[0], self.n_samples
        model = self.net
        plans = self._sample_plans(batch * n, obs.device)
        states = obs.repeat_interleave(n, dim=0)
        plan_hs = _repeat_rows(hs, n, dim)
        zeros = obs.new_zeros(1, batch * n, 1)
        total = obs.new_zeros(batch * n)
        for ac in plans:
            # the model takes actions as episodes record them (policy space), like _predict
            d_norm, plan_hs = model._planned_delta(states[None], ac[None], plan_hs, zeros)
            states = states + d_norm[0] * model.std_d_obs + model.mean_d_obs
            total += torch.as_tensor(self.rew_func(states, self._ac_to_real(ac))).reshape(-1)
        best = _best_plans(total.view(batch, n))
        return plans[0].view(batch, n, -1)[torch.arange(batch, device=obs.device), best]


def _best_plans(totals: torch.Tensor) -> torch.Tensor:
    """The index of the best plan per row of ``totals`` (B, n), the plans' predicted returns.

    A plan whose return is not finite (NaN from a model diverging on it, or +-inf) never
    wins; a row without any finite return raises (it would otherwise pick plan 0, a
    uniformly random action, without a word), so a ``rew_func`` that marks infeasible plans
    should give them a large finite penalty, not ``-inf``.
    """
    finite = torch.isfinite(totals)
    if not bool(finite.any(dim=1).all()):
        raise RuntimeError(
            "MPCPol: the predicted return of every plan is non-finite (NaN or inf) for "
            f"{int((~finite.any(dim=1)).sum())} of {len(totals)} observations: the dynamics "
            "model (net) or rew_func returned non-finite values; check the model's weights "
            "and the statistics it was built with"
        )
    return torch.argmax(torch.where(finite, totals, -torch.inf), dim=1)


def _batch_dim(net: nn.Module) -> int:
    """The axis of ``net.init_hs(b)``'s tensors that has size ``b``."""
    one, two = net.init_hs(1), net.init_hs(2)
    first, second = _first_tensor(one), _first_tensor(two)
    for axis, (a, b) in enumerate(zip(first.shape, second.shape)):
        if (a, b) == (1, 2):
            return axis
    raise ValueError(
        f"net: MPCPol could not find the batch axis of {type(net).__name__}.init_hs: shapes "
        f"{tuple(first.shape)} for 1 and {tuple(second.shape)} for 2"
    )


def _first_tensor(hs: HiddenState) -> torch.Tensor:
    return hs if isinstance(hs, torch.Tensor) else _first_tensor(hs[0])


def _scale_rows(hs: HiddenState, scale: torch.Tensor, dim: int) -> HiddenState:
    def fn(h: torch.Tensor) -> torch.Tensor:
        shape = [1] * h.ndim
        shape[dim] = -1
        return h * scale.to(h.dtype).reshape(shape)

    return map_hs(hs, fn)


def _repeat_rows(hs: HiddenState, n: int, dim: int) -> HiddenState:
    return map_hs(hs, lambda h: h.repeat_interleave(n, dim=dim))
