"""Deterministic state-value function V(s)."""

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pols._recurrent import HiddenState, RecurrentMixin


class DeterministicSVfunc(RecurrentMixin, nn.Module):
    """State-value function wrapping a value net.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation; ``obs`` must end with its shape.
    net : torch.nn.Module
        ``net(obs) -> (B, 1)``; when recurrent ``net(obs, hs, h_masks) -> ((T, B, 1), hs)`` with
        ``init_hs(batch_size)``.
    rnn : bool
        Whether ``net`` is recurrent; hidden-state semantics as for policies (see
        :class:`machina.pols.BasePol`).
    """

    def __init__(self, observation_space: gym.Space, net: nn.Module, rnn: bool = False) -> None:
        super().__init__()
        self._init_recurrent(observation_space, net, rnn)
        outputs = self._check_net()
        lead = 2 if self.rnn else 1
        if len(outputs) != 1 or tuple(outputs[0].shape[lead:]) not in ((), (1,)):
            raise ValueError(
                f"net: {type(self).__name__} needs a net returning values of shape (..., 1), "
                f"got outputs of shapes {[tuple(out.shape) for out in outputs]}"
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
            ``(B,)``, or ``(T, B)`` when recurrent.
        info : dict
            ``mean``: ``vs``; ``hs``: the new hidden state (None when feed-forward).
        """
        obs = self._obs_to_tensor(obs)
        outputs, new_hs = self._call_net(obs, hs, h_masks)
        vs = outputs[0]
        if vs.ndim == obs.ndim - len(self.observation_space.shape) + 1:
            vs = vs.squeeze(-1)
        return vs, dict(mean=vs, hs=new_hs)
