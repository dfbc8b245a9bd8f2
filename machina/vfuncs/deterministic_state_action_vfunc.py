"""Deterministic state-action value function Q(s, a)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.pds.deterministic_pd import DeterministicPd
from machina.utils.recurrent import HiddenState
from machina.utils.spaces import check_space
from machina.vfuncs.base import BaseSAVfunc


class DeterministicSAVfunc(BaseSAVfunc):
    """State-action value function wrapping a Q net.

    Actions are in the *policy's* action space, as episodes store them in ``acs``: for a Box
    policy with ``normalize_ac=True`` that is ``[-1, 1]``, for Discrete the index ``0..n-1``
    (without the space's ``start``).

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation; ``obs`` must end with its shape.
    action_space : gymnasium.spaces.Box, Discrete or MultiDiscrete
        Space of one action; ``acs`` must end with its shape.
    net : torch.nn.Module
        ``net(obs, acs) -> (B, 1)`` (e.g. ``machina.nets.QNet``); when recurrent
        ``net(obs, acs, hs, h_masks) -> ((T, B, 1), hs)`` with ``init_hs(batch_size)``.
    rnn : bool
        Whether ``net`` is recurrent; hidden-state semantics as for policies (see
        :class:`machina.pols.BasePol`).
    """

    action_space_types: tuple[type, ...] = (
        gym.spaces.Box,
        gym.spaces.Discrete,
        gym.spaces.MultiDiscrete,
    )
    #: action spaces whose maximum :meth:`max` finds (by enumeration)
    max_action_space_types: tuple[type, ...] = (gym.spaces.Discrete,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        net: nn.Module,
        rnn: bool = False,
    ) -> None:
        check_space("action_space", action_space, self.action_space_types, type(self).__name__)
        super().__init__(observation_space, action_space, net, rnn)
        self.pd = DeterministicPd()  # machina 0.x's attribute
        self._check_q_net()

    def _check_q_net(self) -> None:
        """Call ``net`` on one zero observation and action; a ValueError naming it if unfit."""
        outputs = self._check_net((self.action_space.shape,), self._acs_dtype())
        lead = (1, 1) if self.rnn else (1,)
        if len(outputs) != 1 or tuple(outputs[0].shape[len(lead) :]) not in ((), (1,)):
            raise ValueError(
                f"net: {type(self).__name__} needs a net returning Q values of shape (..., 1), "
                f"got outputs of shapes {[tuple(out.shape) for out in outputs]}"
            )

    def _acs_dtype(self) -> torch.dtype:
        return self.dtype if isinstance(self.action_space, gym.spaces.Box) else torch.int64

    def _check_indices(self, acs: torch.Tensor) -> None:
        """A ValueError unless Discrete / MultiDiscrete ``acs`` are whole numbers in
        ``[0, n)`` per dimension: one-hot encoding truncates fractions silently and fails on
        others with torch's message, which names no argument."""
        if acs.numel() == 0:
            return
        space = self.action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        n = space.n if discrete else space.nvec
        whole = not acs.is_floating_point() or bool((acs == acs.round()).all())
        if whole:
            if discrete:  # the usual case, on every training step: one reduction
                lo, hi = torch.stack(torch.aminmax(acs)).tolist()  # one device sync
                if lo >= 0 and hi < n:
                    return
            else:
                high = torch.as_tensor(np.asarray(n, dtype=np.int64), device=acs.device)
                if not bool(((acs < 0) | (acs >= high)).any()):
                    return
        raise ValueError(
            f"acs: {type(self).__name__} expects whole action indices in [0, n) with n={n} "
            f"from action_space (policy space: a space's start is not added), given values "
            f"from {acs.min().item()} to {acs.max().item()}"
            + ("" if whole else " with fractions (actions recorded in a continuous space?)")
        )

    def _acs_to_tensor(self, acs: Any, obs: torch.Tensor) -> torch.Tensor:
        """``acs`` as a tensor on :attr:`device` with the leading dims of ``obs``."""
        acs = torch.as_tensor(np.asarray(acs) if isinstance(acs, list | tuple) else acs)
        if not isinstance(self.action_space, gym.spaces.Box):
            self._check_indices(acs)
        acs = acs.to(device=obs.device, dtype=self._acs_dtype())
        ac_shape = tuple(self.action_space.shape)
        lead = tuple(obs.shape[: obs.ndim - len(self.observation_space.shape)])
        n_lead = acs.ndim - len(ac_shape)
        if n_lead < 0 or tuple(acs.shape[n_lead:]) != ac_shape or n_lead > len(lead):
            raise ValueError(
                f"acs: {type(self).__name__} expects (*lead, *ac_shape) with ac_shape={ac_shape} "
                f"from action_space and lead={lead} from obs, got shape {tuple(acs.shape)}"
            )
        acs = acs.reshape((1,) * (len(lead) - n_lead) + tuple(acs.shape))
        if tuple(acs.shape[: len(lead)]) != lead:
            raise ValueError(
                f"acs: expected leading dims {lead} to match obs {tuple(obs.shape)}, "
                f"got shape {tuple(acs.shape)}"
            )
        return acs

    def forward(
        self, obs: Any, acs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """State-action values.

        Parameters
        ----------
        obs : array-like
            ``(B, *ob_shape)``, or ``(T, B, *ob_shape)`` when recurrent; numpy or tensor.
            Feed-forward functions accept any number of leading dims, e.g. ``(S, B)``.
        acs : array-like
            ``(*lead, *ac_shape)`` with the leading dims of ``obs``.
        hs : HiddenState, optional
            Recurrent only: initial state; default the stored one (see :meth:`reset`).
        h_masks : array-like, optional
            Recurrent only: ``(T, B)`` or ``(T, B, 1)``, 1 where an episode starts.

        Returns
        -------
        qs : torch.Tensor
            ``(*lead,)``: ``(B,)``, or ``(T, B)`` when recurrent.
        info : dict
            ``mean``: ``qs``; ``hs``: the new hidden state (None when feed-forward).
        """
        obs = self._obs_to_tensor(obs)
        acs = self._acs_to_tensor(acs, obs)
        outputs, new_hs = self._call_net(obs, hs, h_masks, extra=(acs,))
        qs = outputs[0]
        if qs.ndim == obs.ndim - len(self.observation_space.shape) + 1:
            qs = qs.squeeze(-1)
        return qs, dict(mean=qs, hs=new_hs)

    def max(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Maximum of Q over all actions and the maximising action, for Discrete actions.

        Every action is evaluated in one batched call of ``net``.

        Parameters
        ----------
        obs : array-like
            ``(B, *ob_shape)``.

        Returns
        -------
        max_qs : torch.Tensor
            ``(B,)``; differentiable with respect to the net.
        max_acs : torch.Tensor
            ``(B,)`` int64 in ``0..n-1``.
        """
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(
                f"action_space: {type(self).__name__}.max enumerates a "
                f"gymnasium.spaces.Discrete, got {self.action_space!r}; use "
                "CEMDeterministicSAVfunc for Box actions"
            )
        if self.rnn:
            raise NotImplementedError(f"{type(self).__name__}.max: recurrent nets (rnn=True)")
        qs = self.all_qs(obs)
        max_qs, max_acs = torch.max(qs, dim=-1)
        return max_qs, max_acs

    def all_qs(self, obs: Any) -> torch.Tensor:
        """Q of every Discrete action: ``obs (B, *ob_shape)`` -> ``(B, n)``."""
        obs = self._obs_to_tensor(obs)
        n = int(self.action_space.n)
        # (n, B, ...): one row per action; QNet one-hot encodes the indices.
        obs_all = obs.unsqueeze(0).expand(n, *obs.shape)
        lead = obs.shape[: obs.ndim - len(self.observation_space.shape)]
        acs_all = torch.arange(n, device=obs.device).reshape((n,) + (1,) * len(lead))
        qs, _ = self._call_net(obs_all, extra=(acs_all.expand(n, *lead),))
        qs = qs[0].reshape(n, *lead)
        return torch.movedim(qs, 0, -1)
