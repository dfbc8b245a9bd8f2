"""The environments of one engine as one gymnasium ``VectorEnv``: its sub-environment ``i`` is
the engine's slot ``i``.

What the step loop needs from a vector environment, whatever its kind (gymnasium's
``SyncVectorEnv`` / ``AsyncVectorEnv``, a native one such as ``CartPoleVectorEnv``, envpool's):

- its autoreset mode (``metadata["autoreset_mode"]``, gymnasium 1.x): ``NEXT_STEP`` (the
  default: the step after an episode's end resets that sub-environment and ignores its
  action), ``SAME_STEP`` (the step that ends an episode resets at once; the true final
  observation is in ``info["final_obs"]``) or ``DISABLED`` (the caller resets ended
  sub-environments with ``reset(options={"reset_mask": mask})``);
- whether it can reset some sub-environments only (``reset_mask``): gymnasium's own vector
  environments and envpool can; a native vector environment cannot in general (it may read
  the option and reset all of them), except in ``DISABLED`` mode, whose contract it is.

Seeds: the first (seeded) reset is ``reset(seed=seed + slot_ids[0])``. gymnasium's
``SyncVectorEnv`` / ``AsyncVectorEnv`` then seed sub-environment ``i`` with
``seed + slot_ids[0] + i``, which is ``seed + slot``: each slot gets the seed the per-env engine
gives it. A native vector environment has one RNG for all its sub-environments, seeded with
that number. envpool fixes its seeds when it is made (``envpool.make_gymnasium(...,
seed=...)``; sub-environment ``i`` gets ``seed + i``) and ignores ``reset(seed=...)``: the
sampler's ``seed`` then seeds the policy's draws only.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from machina.samplers._env_slots import (
    _rng_json,
    _set_rng_json,
    action_shape,
    non_finite_detail,
    prepro_fault,
    replay_first_reset,
)
from machina.samplers._setup import slot_seeds
from machina.samplers._task import DEFAULT_MAX_EPISODE_STEPS

_ARRAY_SPACES = (
    gymnasium.spaces.Box,
    gymnasium.spaces.Discrete,
    gymnasium.spaces.MultiDiscrete,
    gymnasium.spaces.MultiBinary,
)


def is_vector_env(env: Any) -> bool:
    """Whether ``env`` is a gymnasium ``VectorEnv`` (envpool's gymnasium environments are)."""
    return isinstance(env, VectorEnv)


def _is_envpool(env: Any) -> bool:
    return any(cls.__module__.startswith("envpool") for cls in type(env).__mro__)


def autoreset_mode(env: Any) -> AutoresetMode:
    """The vector environment's autoreset mode (NEXT_STEP when it does not say)."""
    mode = (getattr(env, "metadata", None) or {}).get("autoreset_mode", AutoresetMode.NEXT_STEP)
    try:
        return mode if isinstance(mode, AutoresetMode) else AutoresetMode(mode)
    except ValueError as exc:
        raise ValueError(
            f"env: metadata['autoreset_mode'] is {mode!r}; expected one of gymnasium's "
            f"AutoresetMode {[m.value for m in AutoresetMode]}"
        ) from exc


class VectorSlots:
    """One ``VectorEnv`` as ``num_envs`` environment slots.

    Parameters
    ----------
    vec : gymnasium.vector.VectorEnv
        The vector environment; its sub-environment ``i`` is slot ``slot_ids[i]``.
    slot_ids : sequence of int
        Global indices of the slots; as many as ``vec.num_envs``.
    seed : int or None
        The first reset is ``reset(seed=seed + slot_ids[0])`` (see the module's notes); later
        resets are unseeded. None: never seeded.
    seeded : sequence of bool, optional
        True (any entry) when the seeded first reset already happened elsewhere.
    """

    def __init__(
        self,
        vec: VectorEnv,
        slot_ids: Any,
        seed: int | None,
        seeded: Any = None,
    ) -> None:
        self.vec = vec
        self.slot_ids = list(slot_ids)
        n = int(vec.num_envs)
        if n != len(self.slot_ids):
            raise ValueError(
                f"num_envs: expected the number of sub-environments of the VectorEnv that env "
                f"makes ({n}), given {len(self.slot_ids)}: pass num_envs={n}"
            )
        self.seeds = slot_seeds(seed, self.slot_ids)
        self._needs_seed = not (seeded is not None and any(seeded))
        self.envpool = _is_envpool(vec)
        self.observation_space = getattr(vec, "single_observation_space", None)
        self.action_space = getattr(vec, "single_action_space", None)
        for name, space in (
            ("observation_space", self.observation_space),
            ("action_space", self.action_space),
        ):
            if not isinstance(space, _ARRAY_SPACES):
                raise TypeError(
                    f"env: the VectorEnv's single_{name} is {space!r}; the vector path takes "
                    "Box, Discrete, MultiDiscrete or MultiBinary spaces (arrays): flatten it "
                    "(e.g. gymnasium.wrappers.vector.FlattenObservation) or pass a factory of "
                    "single environments"
                )
        self.mode = autoreset_mode(vec)
        base = vec.unwrapped
        if (
            isinstance(base, gymnasium.vector.AsyncVectorEnv)
            and not getattr(base, "shared_memory", True)
            and self.mode == AutoresetMode.NEXT_STEP
        ):
            # gymnasium (1.4) leaves such a worker's autoreset flag set across reset(): the
            # first step after it resets again instead, a step the episode would record
            raise ValueError(
                "env: an AsyncVectorEnv with shared_memory=False in NEXT_STEP autoreset mode "
                "takes its first step after a reset() as another reset (gymnasium's worker "
                "keeps its autoreset flag), so episodes would hold a step the environment never "
                "took; use shared_memory=True (the default) or autoreset_mode SAME_STEP"
            )
        self.masked_reset = self.envpool or isinstance(
            base, (gymnasium.vector.SyncVectorEnv, gymnasium.vector.AsyncVectorEnv)
        )
        # DISABLED: resetting ended sub-environments with reset_mask is the mode's contract.
        self.masked_reset = self.masked_reset or self.mode == AutoresetMode.DISABLED
        self.discrete_acs = isinstance(
            self.action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete)
        )
        self.action_shape = action_shape(self.action_space)  # type: ignore[arg-type]
        self.warned_cap = False
        self.ob_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.slot_ids)

    @property
    def envs(self) -> list:
        return [self.vec]

    def describe(self) -> str:
        first, last = self.slot_ids[0], self.slot_ids[-1]
        seeds = "" if self.seeds[0] is None else f", seeds {self.seeds[0]}..{self.seeds[-1]}"
        return f"vector environment (slots {first}..{last}{seeds})"

    def episode_cap(self, requested: int | None | str) -> tuple[int | None, str]:
        """As ``EnvSlots.episode_cap``, from the vector environment's ``spec``."""
        if requested != "auto":
            return requested, "argument"  # type: ignore[return-value]
        limit = getattr(getattr(self.vec, "spec", None), "max_episode_steps", None)
        if self.envpool:
            limit = getattr(getattr(self.vec, "spec", None), "config", None)
            limit = getattr(limit, "max_episode_steps", None)
        if limit:
            return int(limit), "spec"
        return DEFAULT_MAX_EPISODE_STEPS, "default"

    def own_limit(self) -> int:
        """The vector environment's own episode length limit when its spec gives one, else
        ``DEFAULT_MAX_EPISODE_STEPS``: how long a cut slot waits for its sub-environment."""
        limit, source = self.episode_cap("auto")
        return int(limit) if limit else DEFAULT_MAX_EPISODE_STEPS

    def error(self, phase: str, exc: BaseException | None, detail: str = "") -> RuntimeError:
        what = f"raised {type(exc).__name__}: {exc}" if exc is not None else detail
        closed = self._closed_workers()
        if exc is not None and closed:
            # gymnasium's AsyncVectorEnv shut down the worker of each sub-environment that
            # raised: name them, and what happens next
            subs = ", ".join(f"{k} (slot {self.slot_ids[k]}, seed {self.seeds[k]})" for k in closed)
            what += (
                f"; gymnasium closed the worker of sub-environment {subs}, so this VectorEnv "
                "cannot step again: a sampler made with a factory of VectorEnvs makes a new one "
                "at its next sample"
            )
        return RuntimeError(f"{self.describe()} {what} during {phase}")

    def _closed_workers(self) -> list[int]:
        """The sub-environments whose worker gymnasium's ``AsyncVectorEnv`` closed (it does so
        for good when one raises); none for any other vector env."""
        base = self.vec.unwrapped
        if not isinstance(base, gymnasium.vector.AsyncVectorEnv):
            return []
        pipes = getattr(base, "parent_pipes", None) or []
        return [k for k, pipe in enumerate(pipes) if pipe is None or pipe.closed]

    def dead(self) -> bool:
        """Whether the vector environment can no longer step: an ``AsyncVectorEnv`` with a
        closed worker (a sub-environment raised) or closed itself."""
        base = self.vec.unwrapped
        if not isinstance(base, gymnasium.vector.AsyncVectorEnv):
            return False
        return bool(getattr(base, "closed", False)) or bool(self._closed_workers())

    def env_error(
        self, k: int, phase: str, exc: BaseException | None, detail: str = ""
    ) -> RuntimeError:
        """An error of one sub-environment (slot ``k``), as ``EnvSlots.env_error`` words it."""
        what = f"raised {type(exc).__name__}: {exc}" if exc is not None else detail
        return RuntimeError(
            f"environment {self.slot_ids[k]} (seed {self.seeds[k]}, sub-environment {k} of "
            f"a vector environment) {what} during {phase}"
        )

    def non_finite_error(self, k: int, arr: np.ndarray, phase: str) -> RuntimeError:
        return self.env_error(k, phase, None, non_finite_detail(arr))

    def prepro_error(self, k: int, arr: np.ndarray, raw: Any, phase: str) -> RuntimeError:
        """The prepro's fault, as ``EnvSlots.prepro_error`` words it."""
        where = f"sub-environment {k} of a vector environment"
        return prepro_fault(arr, raw, f"{self.slot_ids[k]} (seed {self.seeds[k]}, {where})", phase)

    def reset_all(self) -> np.ndarray:
        """Reset every sub-environment (seeded the first time); the observations (n, ...)."""
        seed = None
        if self._needs_seed and self.seeds[0] is not None and not self.envpool:
            seed = self.seeds[0]
        try:
            obs, _ = self.vec.reset(seed=seed)
        except Exception as exc:
            raise self.error("reset", exc) from exc
        self._needs_seed = False
        return self._batch(obs, "reset")

    def reset_some(self, mask: np.ndarray) -> np.ndarray:
        """Reset the sub-environments where ``mask`` (n,) bool is True; their new
        observations, (mask.sum(), ...)."""
        try:
            obs, _ = self.vec.reset(options={"reset_mask": mask})
        except Exception as exc:
            raise self.error("reset", exc) from exc
        obs = np.asarray(obs)
        count = int(mask.sum())
        if len(obs) == len(self):  # gymnasium: every sub-environment's observation
            return obs[mask]
        if len(obs) == count:  # envpool: those of the reset ones
            return obs
        raise self.error(
            "reset", None, f"returned {len(obs)} observations for a reset of {count} of {len(self)}"
        )

    def _batch(self, obs: Any, phase: str) -> np.ndarray:
        if isinstance(obs, (dict, tuple)):
            raise TypeError(
                f"env: the VectorEnv returned {type(obs).__name__} observations; the vector "
                "path takes arrays (n, *ob_shape)"
            )
        arr = np.asarray(obs)
        if arr.shape[:1] != (len(self),):
            raise self.error(
                phase, None, f"returned observations of shape {arr.shape} for {len(self)} slots"
            )
        return arr

    def step(self, actions: np.ndarray, phase: str) -> tuple:
        try:
            return self.vec.step(actions)
        except Exception as exc:
            raise self.error(phase, exc) from exc

    def _rng_holders(self) -> list[Any]:
        """The vector environment and, for gymnasium's synchronous one, its sub-environments:
        whatever holds an ``np_random`` generator. An ``AsyncVectorEnv``'s own entry is an
        empty stand-in: its ``np_random`` is a call into its workers (see ``_remote_rngs``)."""
        base = self.vec.unwrapped
        if isinstance(base, gymnasium.vector.AsyncVectorEnv):
            return [SimpleNamespace(np_random=None)]
        return [base, *getattr(base, "envs", [])]

    def _remote_rngs(self) -> list[SimpleNamespace] | None:
        """The generators of an ``AsyncVectorEnv``'s sub-environments, fetched from their
        processes (pickled copies), each as a holder's ``np_random`` (None where a
        sub-environment has none); None for any other vector env."""
        base = self.vec.unwrapped
        if not isinstance(base, gymnasium.vector.AsyncVectorEnv):
            return None
        try:
            # asked first: gymnasium closes a worker whose get_attr raises
            if not all(base.call("has_wrapper_attr", "np_random")):
                return [SimpleNamespace(np_random=None) for _ in self.slot_ids]
            rngs = base.get_attr("np_random")
        except Exception as exc:
            raise self.error("fetching the sub-environments' np_random", exc) from exc
        return [SimpleNamespace(np_random=rng) for rng in rngs]

    def state_dict(self) -> dict[str, Any]:
        """The RNGs (JSON text) of the vector environment and of its sub-environments
        (``SyncVectorEnv``'s in this process, ``AsyncVectorEnv``'s from theirs), and whether
        the seeded first reset is to come."""
        holders = [*self._rng_holders(), *(self._remote_rngs() or [])]
        return {
            "slot_ids": list(self.slot_ids),
            "seeds": list(self.seeds),
            "np_random": [_rng_json(holder) for holder in holders],
            "needs_seed": [bool(self._needs_seed)] * len(self.slot_ids),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["slot_ids"]) != self.slot_ids:
            raise ValueError(
                f"state: saved for env slots {list(state['slot_ids'])}, given an engine of "
                f"slots {self.slot_ids}"
            )
        local, texts = self._rng_holders(), list(state["np_random"])
        remote = self._remote_rngs()
        # [vector env, *sub-environments] for gymnasium's synchronous and asynchronous ones
        # alike, [vector env] for a native one (and an AsyncVectorEnv's before session 32)
        full = len(local) + len(remote or [])
        if len(texts) not in (len(local), full):
            raise ValueError(
                f"state: holds {len(texts)} generators (a vector env's and its "
                f"sub-environments'), this sampler's {type(self.vec.unwrapped).__name__} has "
                f"{full}: saved for another kind of vector env"
            )
        self.seeds = list(state.get("seeds", self.seeds))
        if self._needs_seed and not any(state["needs_seed"]):
            self._replay_first_reset()
        for holder, text in zip(local, texts):
            if text is not None:
                _set_rng_json(holder, text)
        if remote is not None and len(texts) == full:
            for holder, text in zip(remote, texts[len(local) :]):
                if text is not None:
                    _set_rng_json(holder, text)
            base = self.vec.unwrapped
            assert isinstance(base, gymnasium.vector.AsyncVectorEnv)  # what has remote RNGs
            try:
                base.set_attr("np_random", [h.np_random for h in remote])
            except Exception as exc:
                raise self.error("restoring the sub-environments' np_random", exc) from exc
        self._needs_seed = bool(any(state["needs_seed"]))

    def _replay_first_reset(self) -> None:
        """The seeded first reset of a restored state (see ``EnvSlots.load_state_dict``): on
        each innermost sub-environment of a synchronous vector env, where no wrapper sees it;
        through the vector env otherwise (its sub-environments are out of reach)."""
        subs = getattr(self.vec.unwrapped, "envs", None)
        try:
            if subs is None:
                self.reset_all()
                return
            first = self.seeds[0]
            for i, sub in enumerate(subs):
                replay_first_reset(sub, None if first is None else first + i)
        except Exception as exc:
            raise self.error("reset (replaying a restored state's)", exc) from exc

    def close(self) -> None:
        try:
            self.vec.close()
        except Exception:
            pass
