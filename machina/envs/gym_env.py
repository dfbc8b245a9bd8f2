"""GymEnv: a picklable wrapper around a gymnasium environment."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium.wrappers import RecordVideo

from machina.envs.bullet import register_bullet_envs

# The Bullet ids must be known wherever a GymEnv is re-made from its id, worker processes
# included (unpickling a GymEnv imports this module); registering imports no pybullet.
register_bullet_envs()

# Copies made by unpickling (one per sampler slot) record under their own names.
_copy_ids = itertools.count()


class CappedCubicVideoSchedule:
    """Record episodes 0, 1, 8, 27, ..., 729, then every 1000th (gymnasium's default)."""

    def __call__(self, count: int) -> bool:
        if count < 1000:
            return int(round(count ** (1.0 / 3))) ** 3 == count
        return count % 1000 == 0


class NoVideoSchedule:
    """Record no episode."""

    def __call__(self, count: int) -> bool:
        return False


class _SeedNextReset:
    """``seed(s)`` seeds the next ``reset`` that gets no seed of its own.

    Old gym environments had ``seed()``, and machina 0.x's scripts call
    ``env.env.seed(args.seed)``; gymnasium seeds through ``reset(seed=...)``, which this
    forwards. (The method lives on ``GymEnv.env``, not on ``GymEnv``, whose own API
    gymnasium's checker inspects and warns about a ``seed`` method.)
    """

    _next_seed: int | None = None

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seed the next ``reset`` that gets no seed of its own; returns ``[seed]``."""
        self._next_seed = seed
        return [seed]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed, self._next_seed = self._next_seed, None
        return super().reset(seed=seed, options=options)


class SeedableEnv(_SeedNextReset, gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """The environment inside a ``GymEnv`` (its ``env`` attribute) when no video is recorded:
    the given or made environment, plus ``seed(s)`` for the next reset."""

    def __init__(self, env: gymnasium.Env) -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(self)
        gymnasium.Wrapper.__init__(self, env)


class SeedableRecordVideo(_SeedNextReset, RecordVideo):
    """The environment inside a ``GymEnv`` that records videos: ``gymnasium``'s
    ``RecordVideo`` plus ``seed(s)`` for the next reset."""


class GymEnv(gymnasium.Env):
    """A gymnasium environment that samplers can copy and send to worker processes.

    Parameters
    ----------
    env : str or gymnasium.Env
        An environment id for ``gymnasium.make`` (e.g. ``"Pendulum-v1"``,
        ``"HopperBulletEnv-v0"``) or an already-built environment.
    record_video : bool
        Wrap the environment with ``gymnasium.wrappers.RecordVideo`` (needs ``moviepy``);
        an environment built from an id is then made with ``render_mode="rgb_array"``.
    video_schedule : callable, optional
        ``episode_index -> bool``: which episodes are recorded; default
        :class:`CappedCubicVideoSchedule`.
    log_dir : str, optional
        Folder the videos go to when ``record_video`` is True.
    force_reset : bool
        Accepted for machina 0.x's signature: a reset in the middle of a recorded episode
        always works here.
    **make_kwargs
        Passed to ``gymnasium.make`` (e.g. ``max_episode_steps=200``); only with an id.

    Attributes
    ----------
    env : gymnasium.Wrapper
        The environment as given or made, in a ``SeedableEnv`` (or a ``RecordVideo`` when
        recording); ``env.env.seed(s)`` seeds the next reset, as in machina 0.x.
    original_env : SeedableEnv
        The environment as given or made, without the video recorder, with ``seed(s)``
        (0.x's scripts call ``env.original_env.seed(s)`` too).

    Notes
    -----
    Built from an id, the environment pickles as its id and keyword arguments and is made
    anew on unpickling, so copies are cheap and never carry simulator handles. Built from an
    instance, the instance itself is pickled.

    The positional order is machina 0.x's ``(env, record_video, video_schedule, log_dir,
    force_reset)``; a path in ``record_video``'s place is read as machina 1.0's first order
    ``(env, log_dir, record_video)``.
    """

    def __init__(
        self,
        env: str | gymnasium.Env,
        record_video: bool = False,
        video_schedule: Callable[[int], bool] | None = None,
        log_dir: str | os.PathLike | None = None,
        force_reset: bool = False,
        **make_kwargs: Any,
    ) -> None:
        if isinstance(record_video, str | os.PathLike):  # (env, log_dir, record_video)
            if log_dir is not None:
                raise TypeError(f"GymEnv: got log_dir twice: {record_video!r} and {log_dir!r}")
            log_dir, record_video = record_video, video_schedule
            video_schedule = None
            if not isinstance(record_video, bool | None):
                raise TypeError(f"record_video: expected a bool, got {record_video!r}")
            record_video = bool(record_video)
        if video_schedule is not None and not callable(video_schedule):
            raise TypeError(
                f"video_schedule: expected a function of the episode index, got {video_schedule!r}"
            )
        if record_video and log_dir is None:
            raise ValueError(
                "log_dir: expected a folder for the videos when record_video=True, given None"
            )
        self.env_id: str | None = None
        self.make_kwargs: dict[str, Any] = dict(make_kwargs)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.record_video = bool(record_video)
        self.monitoring = self.record_video  # machina 0.x's name
        self.video_schedule = video_schedule
        self.force_reset = bool(force_reset)
        self.video_prefix = "rl-video"
        self._is_copy = False
        if isinstance(env, str):
            self.env_id = env
            inner = self._make()
        elif isinstance(env, gymnasium.Env):
            if make_kwargs:
                raise ValueError(
                    "make_kwargs: only allowed when env is an id, given "
                    f"{sorted(make_kwargs)} with env={env!r}"
                )
            inner = self._wrap(env)
        else:
            raise TypeError(
                f"env: expected an environment id (str) or a gymnasium.Env, given {env!r}"
            )
        self._set_inner(inner)

    def _make(self) -> gymnasium.Env:
        kwargs = dict(self.make_kwargs)
        if self.record_video:
            # RecordVideo needs frames, which only the rgb_array render mode returns.
            kwargs.setdefault("render_mode", "rgb_array")
        return self._wrap(gymnasium.make(self.env_id, **kwargs))

    def _wrap(self, env: gymnasium.Env) -> gymnasium.Wrapper:
        self._given_env = env
        seedable = SeedableEnv(env)
        self.original_env = getattr(env, "original_env", seedable)
        if not self.record_video:
            return seedable
        with warnings.catch_warnings():
            if self._is_copy:  # the sampler's copies share the original's folder on purpose
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            return SeedableRecordVideo(
                seedable,
                video_folder=self.log_dir,
                episode_trigger=self.video_schedule,
                name_prefix=self.video_prefix,
                disable_logger=True,
            )

    def _set_inner(self, inner: gymnasium.Env) -> None:
        self.env = inner
        self.observation_space = inner.observation_space
        self.action_space = inner.action_space
        self.metadata = inner.metadata
        self.render_mode = inner.render_mode
        self.spec = inner.spec

    @property
    def horizon(self) -> int | None:
        """Time limit of an episode (``max_episode_steps``), or None when unlimited."""
        spec = self.env.spec
        return None if spec is None else spec.max_episode_steps

    @property
    def np_random(self) -> np.random.Generator:
        return self.env.unwrapped.np_random

    @np_random.setter
    def np_random(self, value: np.random.Generator) -> None:
        # assignable as on gymnasium.Env: AsyncVectorEnv.set_attr restores workers' generators
        self.env.unwrapped.np_random = value
        self._np_random = value

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the environment.

        Returns
        -------
        obs : observation (``observation_space`` sample)
        info : dict
        """
        out = self.env.reset(seed=seed, options=options)
        # gymnasium's checker looks for the generator on the outermost Env: share the inner one.
        self._np_random = self.env.unwrapped.np_random
        return out

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the environment.

        Returns
        -------
        obs, rew, terminated, truncated, info
            As ``gymnasium.Env.step``.
        """
        return self.env.step(action)

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def terminate(self) -> None:
        """Close the environment and its video recorder (machina 0.x's name)."""
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = {
            "env_id": self.env_id,
            "make_kwargs": self.make_kwargs,
            "log_dir": self.log_dir,
            "record_video": self.record_video,
            "video_schedule": self.video_schedule,
            "force_reset": self.force_reset,
        }
        if self.env_id is None:
            # No id to re-make from: the instance as given travels itself.
            state["env"] = self._given_env
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.env_id = state["env_id"]
        self.make_kwargs = state["make_kwargs"]
        self.log_dir = state["log_dir"]
        self.record_video = state["record_video"]
        self.video_schedule = state.get("video_schedule")
        self.force_reset = state.get("force_reset", False)
        self.video_prefix = f"rl-video-{os.getpid()}-{next(_copy_ids)}"
        self._is_copy = True
        if self.env_id is None:
            inner = self._wrap(state["env"])
        else:
            inner = self._make()
        self._set_inner(inner)

    def __repr__(self) -> str:
        if self.env_id is not None:
            return f"GymEnv({self.env_id!r}, {self.make_kwargs})"
        return f"GymEnv({self.env!r})"
