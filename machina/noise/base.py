"""Base class of action noise: a callable returning noise of a batch of actions."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch

from machina.utils.spaces import check_flat_space, check_space


class BaseActionNoise:
    """Noise for a batch of Box actions, drawn from torch's global random generator.

    Drawing from the global generator makes the noise follow ``torch.manual_seed`` and, inside
    ``EpiSampler``, the sampler's own seeded generator, so seeded runs repeat exactly.

    Parameters
    ----------
    action_space : gymnasium.spaces.Box
        One-dimensional Box ``(d,)``. The noise lives in the *policy's* action space: for a
        policy with ``normalize_ac=True`` (the default) that is ``[-1, 1]``, so a scale of 0.1
        is 5% of each action's range.
    """

    def __init__(self, action_space: gym.spaces.Box) -> None:
        owner = type(self).__name__
        check_space("action_space", action_space, gym.spaces.Box, owner)
        check_flat_space("action_space", action_space, owner)
        self.action_space = action_space
        self.ac_dim = int(action_space.shape[0])

    def __call__(
        self, batch_shape: Sequence[int] = (), device: str | torch.device | None = None
    ) -> torch.Tensor:
        """Noise of shape ``(*batch_shape, d)``, float32, on ``device`` (CPU when None)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any state (start of new episodes); stateless noise does nothing."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The noise process's state, for checkpoints (``machina.checkpoint.save_run``);
        empty for stateless noise."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a :meth:`state_dict`."""
        if state:
            raise ValueError(
                f"state: {type(self).__name__} has no state, given keys {sorted(state)}"
            )
