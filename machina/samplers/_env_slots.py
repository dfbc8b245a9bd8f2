"""The environments of one engine: creation, seeded resets, checked observations, errors.

Every error names the environment's global slot index and its seed, so that a failure in a
worker process or a Ray actor reads the same as one in the user's process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np

from machina.samplers._setup import slot_seeds
from machina.samplers._task import DEFAULT_MAX_EPISODE_STEPS, EnvFactory
from machina.utils.checks import all_finite_array as all_finite


def _rng_json(env: Any) -> str | None:
    """``env.unwrapped.np_random``'s state as JSON (None: the env has no such RNG)."""
    rng = getattr(getattr(env, "unwrapped", env), "np_random", None)
    if not isinstance(rng, np.random.Generator):
        return None
    return json.dumps(
        rng.bit_generator.state,
        default=lambda v: v.tolist() if isinstance(v, (np.ndarray, np.generic)) else str(v),
    )


def _set_rng_json(env: Any, text: str) -> None:
    state = json.loads(text)
    rng = getattr(getattr(env, "unwrapped", env), "np_random", None)
    if isinstance(rng, np.random.Generator) and (
        type(rng.bit_generator).__name__ == state["bit_generator"]
    ):
        rng.bit_generator.state = state  # in place: wrappers may expose it read-only
        return
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    getattr(env, "unwrapped", env).np_random = np.random.Generator(bit_generator)


def _is_gym_env(env: Any) -> bool:
    # machina's GymEnv, known by its class (the samplers do not import machina.envs)
    cls = type(env)
    return cls.__name__ == "GymEnv" and cls.__module__ == "machina.envs.gym_env"


def base_env(env: Any) -> Any:
    """The innermost environment of ``env``: through gymnasium's wrappers (``unwrapped``) and
    machina's ``GymEnv`` (its own ``unwrapped``; its gymnasium environment is ``env``). Any
    other environment, even one holding another in an ``env`` attribute, is its own: its
    first reset may do work of its own."""
    base = getattr(env, "unwrapped", env)
    while _is_gym_env(base):
        base = base.env.unwrapped
    return base


def replay_first_reset(env: Any, seed: int | None) -> None:
    """The seeded first reset of a restored environment, on its innermost environment: what
    it leaves behind for later episodes (pybullet_envs' walkers add the ground's parts to the
    robot at their first reset) is then as in the saved run, and no wrapper sees an extra
    episode (a video recorder would write a one-frame clip). Its RNG is restored after."""
    base_env(env).reset(seed=seed)


def action_shape(space: gymnasium.Space) -> tuple[int, ...] | None:
    """The shape of one action for ``space`` (None: a space whose actions are not arrays)."""
    spaces = gymnasium.spaces
    if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
        return tuple(space.shape)
    if isinstance(space, spaces.Discrete):
        return ()
    return None


def dict_obs_error(space: gymnasium.Space) -> TypeError:
    """What to do with Dict/Tuple observations: the sampler stores arrays."""
    return TypeError(
        f"env: observation_space {space} is a {type(space).__name__} space; the sampler stores "
        "observations as arrays, so Dict and Tuple spaces need flattening: wrap the "
        "environment, e.g. EpiSampler(lambda: gymnasium.wrappers.FlattenObservation(make_env()),"
        " pol, ...), build the policy on the flattened observation_space, or pass prepro= "
        "that maps each observation to an array"
    )


def non_finite_detail(arr: np.ndarray) -> str:
    """What is wrong with an observation holding NaN/inf: how many entries, the first one."""
    bad = ~np.isfinite(arr)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return (
        f"returned a non-finite observation ({int(bad.sum())} of {arr.size} entries "
        f"NaN/inf, first at index {first}: {arr[first]})"
    )


def prepro_detail(arr: np.ndarray, raw: Any) -> str:
    """What is wrong with a prepro's output holding NaN/inf, and from what it came."""
    raw = np.asarray(raw) if not isinstance(raw, (dict, tuple)) else raw
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
        source = "a finite raw observation"  # the raw ones are checked before the prepro
    else:
        source = f"a raw observation of type {type(raw).__name__}" + (
            f" (dtype {raw.dtype})" if isinstance(raw, np.ndarray) else ""
        )
    return f"the prepro {non_finite_detail(arr)} from {source}"


def prepro_fault(arr: np.ndarray, raw: Any, env: str, phase: str) -> RuntimeError:
    """The error for a prepro's NaN/inf output ``arr`` from ``raw``, for environment ``env``
    (how the slot is named) during ``phase``."""
    return RuntimeError(
        f"{prepro_detail(arr, raw)}, for environment {env} during {phase}; the prepro is at "
        "fault, not the environment: check it (e.g. a BasePrePro's statistics)"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def step_output_detail(result: Any) -> str | None:
    """What is wrong with what ``env.step`` returned, when converting its ``info`` or its
    ``terminated`` / ``truncated`` flags failed; None when it is none of these."""
    try:
        _, _, term, trunc, info = result
    except (TypeError, ValueError):
        return None  # not five values: the unpacking's own error says so
    try:
        given = bool(info)  # falsy infos (None, {}) are skipped by the loops
    except Exception:  # e.g. an array's ambiguous truth value
        given = True
    if given and not isinstance(info, Mapping):
        return f"returned info {_short(info)} of type {type(info).__name__}; expected a dict"
    for name, flag in (("terminated", term), ("truncated", trunc)):
        try:
            bool(flag)
        except Exception:
            return f"returned {name} {_short(flag)}; expected a bool"
    return None


class EnvSlots:
    """``len(slot_ids)`` environments built by one factory.

    Parameters
    ----------
    env_fn : callable
        Zero-argument factory; called once per environment slot.
    slot_ids : sequence of int
        Global indices of the slots (the indices errors name).
    seed : int or None
        Slot ``i`` resets first with ``seed + i``; later resets are unseeded, so the
        environment's own RNG carries on. None: never seeded.
    seeded : sequence of bool, optional
        Per slot, True when its first (seeded) reset already happened elsewhere, e.g. in a
        worker that died and is being replaced: the replacement must not replay the seed.
    first_env : gymnasium.Env, optional
        Slot 0's environment, already made by ``env_fn``.
    """

    def __init__(
        self,
        env_fn: EnvFactory,
        slot_ids: Sequence[int],
        seed: int | None,
        seeded: Sequence[bool] | None = None,
        first_env: gymnasium.Env | None = None,
    ) -> None:
        self.slot_ids = list(slot_ids)
        self.seeds = slot_seeds(seed, self.slot_ids)
        self._needs_seed = [not s for s in seeded] if seeded is not None else [True] * len(slot_ids)
        self.envs: list[gymnasium.Env] = []
        for k in range(len(self.slot_ids)):
            try:
                # slot 0's may come from the engine's first call of env_fn
                env = first_env if k == 0 and first_env is not None else env_fn()
            except Exception as exc:
                self.close()  # the ones made so far (their simulators, processes)
                raise self.env_error(k, "creation (env factory call)", exc) from exc
            if not (hasattr(env, "reset") and hasattr(env, "step")):
                self.close()
                raise TypeError(f"env: the factory returned {env!r}, which has no reset/step")
            self.envs.append(env)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.discrete_acs = isinstance(
            self.action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete)
        )
        self.action_shape = action_shape(self.action_space)
        self.warned_cap = False  # the default episode cap was reported once
        # Shape of the observations of the current run (after prepro), set by its first reset.
        self.ob_shape: tuple[int, ...] | None = None
        # With a prepro: per slot, the raw observation last seen (kept in e_is["raw_obs"]).
        self.raw_obs: dict[int, np.ndarray] = {}

    def episode_cap(self, requested: int | None | str) -> tuple[int | None, str]:
        """The episode length cap for ``requested`` (``SampleTask.max_episode_steps``) and
        where it comes from: ``"argument"``, ``"spec"`` or ``"default"``."""
        if requested != "auto":
            return requested, "argument"  # type: ignore[return-value]
        spec = getattr(self.envs[0], "spec", None)
        limit = getattr(spec, "max_episode_steps", None)
        if limit:
            return int(limit), "spec"
        return DEFAULT_MAX_EPISODE_STEPS, "default"

    def __len__(self) -> int:
        return len(self.envs)

    def env_error(
        self, k: int, phase: str, exc: BaseException | None, detail: str = ""
    ) -> RuntimeError:
        what = f"raised {type(exc).__name__}: {exc}" if exc is not None else detail
        return RuntimeError(
            f"environment {self.slot_ids[k]} (seed {self.seeds[k]}) {what} during {phase}"
        )

    def non_finite_error(self, k: int, arr: np.ndarray, phase: str) -> RuntimeError:
        return self.env_error(k, phase, None, non_finite_detail(arr))

    def prepro_error(self, k: int, arr: np.ndarray, raw: Any, phase: str) -> RuntimeError:
        """The prepro's fault (its output ``arr`` for slot ``k`` is non-finite), worded as the
        environment's errors are."""
        return prepro_fault(arr, raw, f"{self.slot_ids[k]} (seed {self.seeds[k]})", phase)

    def step_error(self, k: int, phase: str, exc: Exception, result: Any) -> RuntimeError:
        """The error of slot ``k``'s step: ``env.step`` raised ``exc`` (``result`` None), or
        what it returned (``result``) could not be read."""
        detail = None if result is None else step_output_detail(result)
        if detail is None:
            return self.env_error(k, phase, exc)
        return self.env_error(k, phase, None, detail)

    def observe(self, k: int, raw: Any, phase: str, prepro: Callable | None) -> np.ndarray:
        """One observation, checked (finite, the shape of the run's first), after prepro, as a
        new float32 array: the path of the first resets and of every observation with a
        prepro (without one, observations are written to the buffers as they come and
        checked a whole row at a time)."""
        if isinstance(raw, (dict, tuple)):
            if prepro is None:
                raise dict_obs_error(self.observation_space)
            # A Dict / Tuple observation goes to the prepro as it is (the prepro makes the
            # array); it is not kept in e_is["raw_obs"], which holds arrays.
            self.raw_obs.pop(k, None)
            arr = self._prepro(k, prepro, raw, phase)
        else:
            arr = np.asarray(raw)
            if arr.dtype.kind in "fc" and not all_finite(arr):
                raise self.non_finite_error(k, arr, phase)
            if prepro is not None:
                self.raw_obs[k] = np.array(arr)  # a copy: the env may reuse its array
                arr = self._prepro(k, prepro, arr, phase)
            else:
                given = arr
                arr = self._as_float(k, arr, phase, False)
                # after the cast too: None in an object array becomes NaN, a float64 beyond
                # float32's range inf (the environment's faults, not the policy's)
                if not all_finite(arr):
                    raise self._cast_error(k, given, phase)
        if self.ob_shape is None:
            self.ob_shape = arr.shape
        elif arr.shape != self.ob_shape:
            raise self.shape_error(k, arr, phase, prepro is not None)
        return arr

    def _prepro(self, k: int, prepro: Callable, raw: Any, phase: str) -> np.ndarray:
        """``prepro(raw)`` as a new float32 array, checked finite: slot ``k``'s raw observation
        was, so a NaN/inf is the prepro's (None casts to NaN: not numbers)."""
        given = prepro(raw)
        out = self._as_float(k, given, phase, True)
        if not all_finite(out):
            if np.asarray(given).dtype.kind not in "biufc":
                raise self.not_numeric_error(k, given, phase, True)
            raise self.prepro_error(k, out, raw, phase)
        return out

    def _as_float(self, k: int, obs: Any, phase: str, prepro: bool) -> np.ndarray:
        """``obs`` as a new float32 array (a copy: the env may reuse its array), or an error
        naming slot ``k`` when it holds no numbers (strings, None)."""
        try:
            return np.array(obs, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise self.not_numeric_error(k, obs, phase, prepro) from exc

    def _cast_error(self, k: int, given: np.ndarray, phase: str) -> RuntimeError:
        """Slot ``k``'s finite (or not numeric) observation ``given`` became NaN/inf as
        float32."""
        if given.dtype.kind not in "biufc":
            return self.not_numeric_error(k, given, phase, False)
        peak = float(np.abs(given).max())
        detail = (
            f"returned an observation beyond float32's range (|value| up to {peak:.3g}); "
            "expected values the sampler can store as float32"
        )
        return self.env_error(k, phase, None, detail)

    def not_numeric_error(self, k: int, obs: Any, phase: str, prepro: bool) -> RuntimeError:
        """Slot ``k``'s observation (the prepro's output when ``prepro``) holds no numbers."""
        try:
            kind = f"dtype {np.asarray(obs).dtype}"
        except (TypeError, ValueError):  # e.g. a ragged list
            kind = f"type {type(obs).__name__}"
        given = f"an observation {_short(obs)} of {kind}"
        if not prepro:
            return self.env_error(k, phase, None, f"returned {given}; expected numbers")
        return RuntimeError(
            f"the prepro returned {given} for environment {self.slot_ids[k]} (seed "
            f"{self.seeds[k]}) during {phase}; expected numbers"
        )

    def shape_error(self, k: int, raw: Any, phase: str, prepro: bool = False) -> RuntimeError:
        if np.shape(raw) == self.ob_shape:  # the shape is right: the values are not numbers
            return self.not_numeric_error(k, raw, phase, prepro)
        what = "an observation" + (" (after prepro)" if prepro else "")
        return self.env_error(
            k,
            phase,
            None,
            f"returned {what} of shape {np.shape(raw)} where {self.ob_shape} (the shape of "
            "the first one) was expected",
        )

    def store_reset(self, row: np.ndarray, k: int, raw: Any, prepro: Callable | None) -> None:
        """``row[k] = raw``, slot k's reset observation: as is without prepro (the caller checks
        that it is finite), else through ``observe``."""
        if prepro is not None:
            row[k] = self.observe(k, raw, "reset", prepro)
            return
        try:
            row[k] = raw
        except (TypeError, ValueError) as exc:
            raise self.shape_error(k, raw, "reset") from exc

    def reset(self, k: int) -> Any:
        """Reset slot k (with its seed the first time); the raw observation."""
        seed = self.seeds[k] if self._needs_seed[k] else None
        try:
            raw, _ = self.envs[k].reset(seed=seed)
        except Exception as exc:
            raise self.env_error(k, "reset", exc) from exc
        self._needs_seed[k] = False
        return raw

    def state_dict(self) -> dict[str, Any]:
        """Each environment's RNG (``env.unwrapped.np_random``'s bit generator state as JSON
        text: no pickle) and whether its seeded first reset is still to come (``load_state_dict``
        replays that reset on a fresh environment before restoring its RNG)."""
        return {
            "slot_ids": list(self.slot_ids),
            "seeds": list(self.seeds),
            "np_random": [_rng_json(env) for env in self.envs],
            "needs_seed": [bool(x) for x in self._needs_seed],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["slot_ids"]) != self.slot_ids:
            raise ValueError(
                f"state: saved for env slots {list(state['slot_ids'])}, given an engine of "
                f"slots {self.slot_ids}"
            )
        # the saved run's seeds (states before session 31 have none: this sampler's)
        seeds = list(state.get("seeds", self.seeds))
        for k, (env, text) in enumerate(zip(self.envs, state["np_random"])):
            if self._needs_seed[k] and not state["needs_seed"][k]:
                # Replay the slot's seeded first reset on a fresh environment: some keep state
                # from one episode to the next outside np_random (pybullet_envs' walkers add
                # the ground's parts to the robot at their first reset), so an environment that
                # was never reset would start its next episode differently from the saved one.
                try:
                    replay_first_reset(env, seeds[k])
                except Exception as exc:
                    raise self.env_error(k, "reset (replaying a restored state's)", exc) from exc
            if text is not None:
                _set_rng_json(env, text)
        self.seeds = seeds
        self._needs_seed = [bool(x) for x in state["needs_seed"]]

    def close(self) -> None:
        """Close every environment, ignoring errors (closing is best effort)."""
        for env in self.envs:
            try:
                env.close()
            except Exception:
                pass
        self.envs = []
