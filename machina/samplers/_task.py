"""The contract between a sampler and its engines: one typed task out, packed columns back.

A ``SampleTask`` is what every engine of one ``sample`` call shares (the policy and how to act);
``Quotas`` is each engine's own share of the budget. Both transports (worker processes,
``workers.py``; Ray actors, ``raysampler_backend.py``) send exactly these, and get back the
engine's ``pack_episodes`` result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

Episode = dict[str, Any]
EnvFactory = Callable[[], gymnasium.Env]


#: The episode length cap of ``max_episode_steps="auto"`` for an environment without
#: ``spec.max_episode_steps``: long enough for any usual task (gymnasium's registered limits
#: go to 1,000 for MuJoCo and 27,000 agent steps for Atari's 108,000 frames with their own
#: spec), short enough that an environment that never ends costs seconds and a bounded
#: amount of memory, not a hang.
DEFAULT_MAX_EPISODE_STEPS = 10_000


class SamplingAborted(Exception):
    """Raised inside ``BatchEngine.run`` when its ``should_stop`` callback answers True."""


@dataclass(frozen=True)
class SampleTask:
    """What every engine of one ``sample`` call acts with; pickled once per call.

    Attributes
    ----------
    pol : torch.nn.Module
        Policy per the machina contract: ``pol(obs) -> (ac_real, ac, a_i)``.
    deterministic : bool
        Act with ``pol.deterministic_ac_real`` (the distribution's mode).
    prepro : callable or None
        Maps one observation (*ob_shape) to what the policy sees and episodes store.
    fast_inference : bool
        Act with a numpy copy of the policy when the policy offers one
        (``pol.numpy_inference()``); False always calls ``pol``.
    max_episode_steps : int, None or "auto"
        Episodes are cut (marked truncated) at this length. ``"auto"``: the environment's
        ``spec.max_episode_steps`` when it has one, else ``DEFAULT_MAX_EPISODE_STEPS``.
        None: never cut.
    """

    pol: Any
    deterministic: bool = False
    prepro: Callable[[np.ndarray], np.ndarray] | None = None
    fast_inference: bool = True
    max_episode_steps: int | None | str = "auto"


@dataclass(frozen=True)
class Quotas:
    """One engine's share of a budget, one entry per environment slot (None: unlimited).

    A slot starts a new episode only while it has started fewer than ``epis[k]`` episodes and
    collected (finished plus in progress) fewer than ``steps[k]`` steps.
    """

    epis: Sequence[int | None]
    steps: Sequence[int | None]

    def __post_init__(self) -> None:
        if len(self.epis) != len(self.steps):
            raise ValueError(
                f"Quotas: epis and steps need one entry per slot, given {len(self.epis)} "
                f"and {len(self.steps)}"
            )


@dataclass(frozen=True)
class EngineSpec:
    """What a transport needs to build one remote engine (``BatchEngine.from_spec``).

    Attributes
    ----------
    index : int
        The engine's index ``w``: it owns the global slots ``slot_ids``.
    slot_ids : list of int
        Global slot indices, ``w * num_envs ... (w + 1) * num_envs - 1``.
    seed : int or None
        Slot ``i`` first resets with ``seed + i``.
    rng_seed : int or None
        Seed of the policy's torch RNG in this engine (distinct per engine and restart).
    seeded : list of bool
        Per slot, whether its seeded first reset already happened (a replacement engine).
    """

    index: int
    slot_ids: list[int]
    seed: int | None
    rng_seed: int | None
    seeded: list[bool]
