"""LSTM nets for recurrent policies and value functions.

Both take ``(obs (T, B, *ob_shape), hs, h_masks (T, B, 1))`` and return their outputs with leading
``(T, B)`` plus the new ``hs``. ``h_masks`` is 1 where an episode starts: the state ``(h, c)`` of
that batch column is zeroed before the step is processed. The sequence is cut only at the time
steps where some column resets, and each piece runs through ``torch.nn.LSTM`` at once; sampling
(T = 1) and whole-episode batches therefore cost no per-step Python beyond the resets.
"""

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.nets._layers import HIDDEN_GAIN, PolHead, flatten_obs, init_linear, ob_dim_of
from machina.utils.spaces import check_space

HiddenState = tuple[torch.Tensor, torch.Tensor]


def run_lstm(
    lstm: nn.LSTM, xs: torch.Tensor, hs: HiddenState, h_masks: torch.Tensor | None
) -> tuple[torch.Tensor, HiddenState]:
    """Run ``lstm`` over ``xs (T, B, in)`` from ``hs``, zeroing the state where ``h_masks`` is set.

    Parameters
    ----------
    lstm : torch.nn.LSTM
        Single-layer, not batch-first.
    xs : torch.Tensor
        ``(T, B, in)``.
    hs : tuple of torch.Tensor
        ``(h, c)``, each ``(1, B, cell)``.
    h_masks : torch.Tensor or None
        ``(T, B)`` or ``(T, B, 1)``; non-zero where an episode starts. None: no reset.

    Returns
    -------
    outputs : torch.Tensor
        ``(T, B, cell)``.
    hs : tuple of torch.Tensor
        ``(h, c)`` after the last step, each ``(1, B, cell)``.
    """
    time_steps, batch_size = xs.shape[:2]
    h, c = hs
    expected = (lstm.num_layers, batch_size, lstm.hidden_size)
    if tuple(h.shape) != expected or tuple(c.shape) != expected:
        raise ValueError(
            f"hs: expected (h, c) each of shape {expected} (see init_hs), "
            f"got {tuple(h.shape)} and {tuple(c.shape)}"
        )
    if h_masks is None:
        out, (h, c) = lstm(xs, (h, c))
        return out, (h, c)
    resets = h_masks.reshape(time_steps, batch_size) != 0  # (T, B)
    reset_steps = torch.nonzero(resets.any(dim=1)).flatten().tolist()
    bounds = sorted({0, time_steps, *reset_steps})
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        # a reset at `start` zeroes the masked columns before that step is processed
        keep = ~resets[start].reshape(1, batch_size, 1)
        h, c = h * keep, c * keep
        out, (h, c) = lstm(xs[start:stop], (h, c))
        pieces.append(out)
    return torch.cat(pieces, dim=0), (h, c)


class _LSTMBody(nn.Module):
    """Input layer, LSTM and ``init_hs`` shared by the LSTM nets."""

    def __init__(self, observation_space: gym.Space, h_size: int, cell_size: int) -> None:
        super().__init__()
        ob_dim = ob_dim_of(observation_space, type(self).__name__)
        self.ob_ndim = len(observation_space.shape or ())  # a Box (ob_dim_of checked)
        self.h_size = h_size
        self.cell_size = cell_size
        self.rnn = True
        self.input_layer = init_linear(nn.Linear(ob_dim, h_size), HIDDEN_GAIN)
        self.lstm = nn.LSTM(h_size, cell_size)

    def init_hs(self, batch_size: int = 1) -> HiddenState:
        """Zero state ``(h, c)``, each ``(1, batch_size, cell_size)``, on the net's device."""
        weight = self.input_layer.weight
        return (
            weight.new_zeros(1, batch_size, self.cell_size),
            weight.new_zeros(1, batch_size, self.cell_size),
        )

    def _features(
        self, obs: torch.Tensor, hs: HiddenState | None, h_masks: torch.Tensor | None
    ) -> tuple[torch.Tensor, HiddenState]:
        if obs.ndim != self.ob_ndim + 2:
            raise ValueError(
                f"obs: {type(self).__name__} expects (T, B, *ob_shape), got {tuple(obs.shape)}"
            )
        if hs is None:
            hs = self.init_hs(obs.shape[1])
        xs = torch.relu(self.input_layer(flatten_obs(obs, self.ob_ndim)))
        return run_lstm(self.lstm, xs, hs, h_masks)


class PolNetLSTM(_LSTMBody):
    """LSTM policy net.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    action_space : gymnasium.spaces.Box, Discrete or MultiDiscrete
        Decides the outputs (see :meth:`forward`).
    h_size : int
        Size of the ReLU input layer.
    cell_size : int
        LSTM hidden size.
    deterministic : bool
        Box only: return ``(mean, hs)`` without ``log_std``.
    squash_mean : bool
        Box only: bound the mean to [-1, 1] with ``tanh`` (default); False: a linear mean,
        the actions clipped to the space by the policy.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.Space,
        h_size: int = 64,
        cell_size: int = 64,
        deterministic: bool = False,
        squash_mean: bool = True,
    ) -> None:
        super().__init__(observation_space, h_size, cell_size)
        owner = type(self).__name__
        self.head = PolHead(cell_size, action_space, owner, deterministic, squash_mean)

    def forward(
        self,
        obs: torch.Tensor,
        hs: HiddenState | None = None,
        h_masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Policy outputs over a sequence.

        Parameters
        ----------
        obs : torch.Tensor
            ``(T, B, *ob_shape)``.
        hs : tuple of torch.Tensor, optional
            ``(h, c)`` each ``(1, B, cell_size)``; zeros when None.
        h_masks : torch.Tensor, optional
            ``(T, B, 1)`` or ``(T, B)``, 1 where an episode starts.

        Returns
        -------
        Box: ``(mean (T, B, d), log_std (T, B, d), hs)``. Discrete: ``(pi (T, B, n), hs)``.
        MultiDiscrete: ``(pi (T, B, k, n_max), hs)``.
        """
        features, hs = self._features(obs, hs, h_masks)
        return (*self.head(features), hs)


class VNetLSTM(_LSTMBody):
    """LSTM state-value net: ``(obs (T, B, *ob_shape), hs, h_masks)`` -> ``(vs (T, B, 1), hs)``."""

    def __init__(
        self, observation_space: gym.spaces.Box, h_size: int = 64, cell_size: int = 64
    ) -> None:
        super().__init__(observation_space, h_size, cell_size)
        self.output_layer = init_linear(nn.Linear(cell_size, 1), 1.0)

    def forward(
        self,
        obs: torch.Tensor,
        hs: HiddenState | None = None,
        h_masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, HiddenState]:
        """State values ``(T, B, 1)`` and the new ``hs``; arguments as in ``PolNetLSTM.forward``."""
        features, hs = self._features(obs, hs, h_masks)
        return self.output_layer(features), hs


class QNetLSTM(_LSTMBody):
    """LSTM action-value net for recurrent off-policy learners (``r2d2_sac``).

    ``(obs (T, B, *ob_shape), acs (T, B, d), hs, h_masks)`` -> ``(qs (T, B, 1), hs)``. The
    LSTM reads observations only and the action joins in the MLP head after it, so the
    recurrent state does not depend on the actions: a target computed with the policy's
    next actions can reuse the state built on the replayed ones.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Observations ``(*ob_shape)``, flattened on input.
    action_space : gymnasium.spaces.Box
        Actions ``(d,)``.
    h_size : int
        Size of the ReLU input layer and of the head's hidden layer.
    cell_size : int
        LSTM hidden size.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        h_size: int = 64,
        cell_size: int = 64,
    ) -> None:
        super().__init__(observation_space, h_size, cell_size)
        check_space("action_space", action_space, gym.spaces.Box, type(self).__name__)
        ac_dim = int(np.prod(action_space.shape, dtype=np.int64))
        self.hidden_layer = init_linear(nn.Linear(cell_size + ac_dim, h_size), HIDDEN_GAIN)
        self.output_layer = init_linear(nn.Linear(h_size, 1), 1.0)

    def forward(
        self,
        obs: torch.Tensor,
        acs: torch.Tensor,
        hs: HiddenState | None = None,
        h_masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, HiddenState]:
        """Q values ``(T, B, 1)`` and the new ``hs``; ``acs`` is ``(T, B, d)``."""
        features, hs = self._features(obs, hs, h_masks)
        hidden = torch.relu(self.hidden_layer(torch.cat([features, acs], dim=-1)))
        return self.output_layer(hidden), hs
