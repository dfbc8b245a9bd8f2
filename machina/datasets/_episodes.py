"""Helpers shared by the dataset converters: episode lists from a Traj, action spaces."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from machina.pols import BasePol
from machina.traj import Traj

Epi = dict

__all__ = ["as_epis", "policy_to_env_acs", "env_to_policy_acs"]


def as_epis(epis: Sequence[Epi] | Traj, name: str = "epis") -> list[Epi]:
    """Episodes as a list of dicts: a Traj's registered episodes (or its pending ones when none
    are registered), or the list itself. Raises ``ValueError`` naming ``name`` when empty."""
    if isinstance(epis, Traj):
        if epis.num_epi:
            out = epis.epis()
        else:
            out = list(epis.current_epis or [])
    elif isinstance(epis, Sequence) and not isinstance(epis, str | bytes):
        out = list(epis)
    else:
        raise ValueError(f"{name}: expected a Traj or a list of episode dicts, got {type(epis)!r}")
    if not out:
        raise ValueError(f"{name}: expected at least one episode, got none")
    for i, epi in enumerate(out):
        missing = [k for k in ("obs", "acs", "rews") if k not in epi]
        if missing:
            raise ValueError(f"{name}[{i}]: episode dict lacks {missing}")
    return out


def policy_to_env_acs(pol: BasePol | None, acs: np.ndarray) -> np.ndarray:
    """The environment's actions for policy-space ``acs (T, *ac_shape)``: what the policy sent
    to ``env.step`` (``pol.convert_ac_for_real``); ``acs`` unchanged when ``pol`` is None."""
    if pol is None:
        return np.asarray(acs)
    return np.asarray(pol.convert_ac_for_real(np.asarray(acs)))


def env_to_policy_acs(pol: BasePol | None, actions: np.ndarray) -> np.ndarray:
    """Inverse of :func:`policy_to_env_acs` on actions inside the space.

    Box with ``normalize_ac``: ``2 (a - low) / (high - low) - 1`` in float32, so a Gaussian
    policy's ``llh`` scores them; policy-space actions that were clipped to the bounds come
    back at ``±1``, not where they were sampled. Discrete / MultiDiscrete: minus ``start``, as
    int64. ``actions`` unchanged when ``pol`` is None.
    """
    actions = np.asarray(actions)
    if pol is None:
        return actions
    space: gym.Space = pol.action_space
    if isinstance(space, gym.spaces.Box):
        acs = actions.astype(np.float32)
        if pol.normalize_ac:
            low = np.asarray(space.low, np.float32)
            high = np.asarray(space.high, np.float32)
            acs = (2.0 * (acs - low) / (high - low) - 1.0).astype(np.float32)
        return acs
    if not np.array_equal(actions, np.round(actions)):  # bool and int arrays pass
        raise ValueError(
            f"actions: expected whole numbers for {space}, got fractional values such as "
            f"{float(actions[actions != np.round(actions)][0])}"
        )
    start = np.asarray(getattr(space, "start", 0), dtype=np.int64)
    return actions.astype(np.int64) - start
