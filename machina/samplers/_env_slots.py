"""The environments of one engine: creation, seeded resets, checked observations, errors.

Every error names the environment's global slot index and its seed, so that a failure in a
worker process or a Ray actor reads the same as one in the user's process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np

from machina.samplers._setup import slot_seeds
from machina.samplers._task import EnvFactory
from machina.utils.checks import all_finite_array as all_finite


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
    """

    def __init__(
        self,
        env_fn: EnvFactory,
        slot_ids: Sequence[int],
        seed: int | None,
        seeded: Sequence[bool] | None = None,
    ) -> None:
        self.slot_ids = list(slot_ids)
        self.seeds = slot_seeds(seed, self.slot_ids)
        self._needs_seed = [not s for s in seeded] if seeded is not None else [True] * len(slot_ids)
        self.envs: list[gymnasium.Env] = []
        for k in range(len(self.slot_ids)):
            try:
                env = env_fn()
            except Exception as exc:
                raise self.env_error(k, "creation (env factory call)", exc) from exc
            if not (hasattr(env, "reset") and hasattr(env, "step")):
                raise TypeError(f"env: the factory returned {env!r}, which has no reset/step")
            self.envs.append(env)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.discrete_acs = isinstance(
            self.action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete)
        )
        # Shape of the observations of the current run (after prepro), set by its first reset.
        self.ob_shape: tuple[int, ...] | None = None
        # With a prepro: per slot, the raw observation last seen (kept in e_is["raw_obs"]).
        self.raw_obs: dict[int, np.ndarray] = {}

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
        bad = ~np.isfinite(arr)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return self.env_error(
            k,
            phase,
            None,
            f"returned a non-finite observation ({int(bad.sum())} of {arr.size} entries "
            f"NaN/inf, first at index {first}: {arr[first]})",
        )

    def observe(self, k: int, raw: Any, phase: str, prepro: Callable | None) -> np.ndarray:
        """One observation, checked (finite, the shape of the run's first), after prepro, as a
        new float32 array: the path of the first resets and of every observation with a
        prepro (without one, observations are written to the buffers as they come and
        checked a whole row at a time)."""
        arr = np.asarray(raw)
        if arr.dtype.kind in "fc" and not all_finite(arr):
            raise self.non_finite_error(k, arr, phase)
        if prepro is not None:
            self.raw_obs[k] = np.array(arr)  # a copy: the env may reuse its array
            arr = np.asarray(prepro(arr))
        arr = np.array(arr, dtype=np.float32)  # a copy: the env may reuse its array
        if self.ob_shape is None:
            self.ob_shape = arr.shape
        elif arr.shape != self.ob_shape:
            raise self.shape_error(k, arr, phase, prepro is not None)
        return arr

    def shape_error(self, k: int, raw: Any, phase: str, prepro: bool = False) -> RuntimeError:
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

    def close(self) -> None:
        """Close every environment, ignoring errors (closing is best effort)."""
        for env in self.envs:
            try:
                env.close()
            except Exception:
                pass
        self.envs = []
