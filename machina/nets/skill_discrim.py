"""MLP skill discriminator for DIAYN: state -> logits over the skills."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn

from machina.nets._layers import HIDDEN_GAIN, init_linear, ob_dim_of


class SkillDiscrimNet(nn.Module):
    """MLP ``q(z | s)``: ``state (*lead, ob_dim)`` -> logits ``(*lead, num_skill)``.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Box
        Space of the state, shape (ob_dim,): the observation *without* the skill one-hot
        (``SkillEnv.real_observation_space``).
    num_skill : int
        Number of skills.
    h1, h2 : int
        Hidden layer sizes (ReLU).
    feature_idx : sequence of int, optional
        Classify from these state entries only, e.g. the (x, y) position of a robot, so that
        skills differ where it matters (the DIAYN paper's prior on the discriminator's input,
        section 4.4.2). Default: the whole state.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        num_skill: int,
        h1: int = 64,
        h2: int = 64,
        feature_idx: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        ob_dim = ob_dim_of(observation_space, type(self).__name__)
        if len(observation_space.shape) != 1:
            raise ValueError(
                f"observation_space: SkillDiscrimNet needs a Box of shape (ob_dim,), got "
                f"{observation_space!r}"
            )
        if isinstance(num_skill, bool) or int(num_skill) != num_skill or num_skill < 2:
            raise ValueError(f"num_skill: expected an integer >= 2, got {num_skill!r}")
        self.ob_dim = ob_dim
        self.num_skill = int(num_skill)
        if feature_idx is not None:
            idx = [int(i) for i in feature_idx]
            if not idx or any(not 0 <= i < ob_dim for i in idx):
                raise ValueError(
                    f"feature_idx: expected a non-empty sequence of indices in [0, {ob_dim}), "
                    f"got {feature_idx!r}"
                )
            self.register_buffer("feature_idx", torch.tensor(idx, dtype=torch.int64))
            in_dim = len(idx)
        else:
            self.feature_idx = None
            in_dim = ob_dim
        self.fc1 = init_linear(nn.Linear(in_dim, h1), HIDDEN_GAIN)
        self.fc2 = init_linear(nn.Linear(h1, h2), HIDDEN_GAIN)
        self.output_layer = init_linear(nn.Linear(h2, self.num_skill), 1.0)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Skill logits ``(*lead, num_skill)`` for ``state (*lead, ob_dim)``."""
        if state.shape[-1] != self.ob_dim:
            raise ValueError(
                f"state: expected (..., {self.ob_dim}) without the skill one-hot, got shape "
                f"{tuple(state.shape)}"
            )
        if self.feature_idx is not None:
            state = state.index_select(-1, self.feature_idx)
        h = torch.relu(self.fc1(state))
        h = torch.relu(self.fc2(h))
        return self.output_layer(h)
