"""Base class of dynamics models: spaces, a net and the recurrence protocol."""

from __future__ import annotations

from machina.utils.recurrent import StateActionModule


class BaseModel(StateActionModule):
    """Base of models ``(obs, acs) -> prediction``: ``observation_space``, ``action_space``,
    ``net``, ``rnn`` and the hidden state (``reset()`` forgets it).

    Parameters
    ----------
    observation_space, action_space : gymnasium.Space
        Spaces of one observation and one action.
    net : torch.nn.Module
        The model's net.
    rnn : bool
        Whether ``net`` is recurrent (see :class:`machina.pols.BasePol`).
    """
