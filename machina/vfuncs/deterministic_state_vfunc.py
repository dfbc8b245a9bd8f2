"""Deterministic state-value function V(s)."""

import warnings
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pds.deterministic_pd import DeterministicPd
from machina.utils.recurrent import HiddenState
from machina.vfuncs.base import BaseSVfunc


class DeterministicSVfunc(BaseSVfunc):
    """State-value function wrapping a value net.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation; ``obs`` must end with its shape.
    net : torch.nn.Module
        ``net(obs) -> (B, 1)``; when recurrent ``net(obs, hs, h_masks) -> ((T, B, 1), hs)`` with
        ``init_hs(batch_size)``. A net with several outputs per state, ``(B, k)``, gives
        values ``(B, k)`` (e.g. the DIAYN discriminator's logits).
    rnn : bool
        Whether ``net`` is recurrent; hidden-state semantics as for policies (see
        :class:`machina.pols.BasePol`).

    Notes
    -----
    The net is probed with one zero observation of ``observation_space``. A net that cannot
    take it (its input is not that space, e.g. machina 0.x's DIAYN discriminator: given the
    feature space, fed states that it maps to features itself) is accepted with a warning,
    and observations then reach it as given, unchecked, as in machina 0.x.
    """

    def __init__(self, observation_space: gym.Space, net: nn.Module, rnn: bool = False) -> None:
        super().__init__(observation_space, net, rnn)
        self.pd = DeterministicPd()  # machina 0.x's attribute
        self.checks_obs = True
        try:
            outputs = self._check_net()
        except ValueError as error:
            if error.__cause__ is None:  # not a failed call: no Module, or rnn without init_hs
                raise
            warnings.warn(
                f"{error}; observations will be passed to the net unchecked",
                stacklevel=2,
            )
            self.checks_obs = False
            return
        if len(outputs) != 1:
            raise ValueError(
                f"net: {type(self).__name__} needs a net returning one tensor of values "
                f"(..., 1) or (..., k), got {len(outputs)} outputs of shapes "
                f"{[tuple(out.shape) for out in outputs]}"
            )

    def forward(
        self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """State values.

        Parameters
        ----------
        obs : array-like
            ``(B, *ob_shape)``, or ``(T, B, *ob_shape)`` when recurrent; numpy or tensor.
        hs : HiddenState, optional
            Recurrent only: initial state; default the stored one (see :meth:`reset`).
        h_masks : array-like, optional
            Recurrent only: ``(T, B)`` or ``(T, B, 1)``, 1 where an episode starts.

        Returns
        -------
        vs : torch.Tensor
            ``(B,)``, or ``(T, B)`` when recurrent (``(B, k)`` / ``(T, B, k)`` for a net with
            ``k > 1`` outputs).
        info : dict
            ``mean``: ``vs``; ``hs``: the new hidden state (None when feed-forward).
        """
        if not self.checks_obs:
            return self._forward_unchecked(obs, hs, h_masks)
        obs = self._obs_to_tensor(obs)
        outputs, new_hs = self._call_net(obs, hs, h_masks)
        vs = outputs[0]
        if vs.ndim == obs.ndim - len(self.observation_space.shape) + 1:
            vs = vs.squeeze(-1)
        return vs, dict(mean=vs, hs=new_hs)

    def _forward_unchecked(
        self, obs: Any, hs: HiddenState | None, h_masks: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The net on ``obs`` as given (:attr:`dtype`, on :attr:`device`, at least ``(1, d)``)."""
        obs = torch.as_tensor(obs).to(device=self.device, dtype=self.dtype)
        while obs.ndim < (3 if self.rnn else 2):
            obs = obs.unsqueeze(0)
        # the checked path's call: the stored state kept detached, of its batch size
        outputs, hs = self._call_net(obs, hs, h_masks)
        vs = outputs[0]
        if vs.shape[-1] == 1:
            vs = vs.squeeze(-1)
        return vs, dict(mean=vs, hs=hs)


class NormalizedDeterministicSVfunc(DeterministicSVfunc):
    """A :class:`DeterministicSVfunc` whose net predicts standardised values:
    ``V(s) = net(s) * x_std + x_mean``.

    ``x_mean`` and ``x_std`` (buffers, ``(1,)``) are set with :meth:`set_mean` and
    :meth:`set_std`, e.g. to the mean and standard deviation of the returns.
    """

    def __init__(self, observation_space: gym.Space, net: nn.Module, rnn: bool = False) -> None:
        super().__init__(observation_space, net, rnn)
        self.register_buffer("x_mean", torch.zeros(1))
        self.register_buffer("x_std", torch.ones(1))
        self.normalized = True

    def forward(
        self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """State values in real units; arguments and results as
        :meth:`DeterministicSVfunc.forward` (``info["mean"]`` is the standardised value)."""
        vs, info = super().forward(obs, hs, h_masks)
        return vs * self.x_std + self.x_mean, info

    def set_mean(self, mean: float | torch.Tensor) -> None:
        """Set ``x_mean`` (a scalar)."""
        self.x_mean.copy_(torch.as_tensor(mean, dtype=self.x_mean.dtype).reshape(1))

    def set_std(self, std: float | torch.Tensor) -> None:
        """Set ``x_std`` (a positive scalar)."""
        std = torch.as_tensor(std, dtype=self.x_std.dtype).reshape(1)
        if not bool(std > 0):
            raise ValueError(f"std: expected a positive scale, got {float(std)!r}")
        self.x_std.copy_(std)
