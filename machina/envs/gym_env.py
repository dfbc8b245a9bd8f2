"""GymEnv: a picklable wrapper around a gymnasium environment."""

from __future__ import annotations

import itertools
import os
from typing import Any

import gymnasium
import numpy as np

from machina.envs.bullet import register_bullet_envs

# The Bullet ids must be known wherever a GymEnv is re-made from its id, worker processes
# included (unpickling a GymEnv imports this module); registering imports no pybullet.
register_bullet_envs()

# Copies made by unpickling (one per sampler slot) record under their own names.
_copy_ids = itertools.count()


class GymEnv(gymnasium.Env):
    """A gymnasium environment that samplers can copy and send to worker processes.

    Parameters
    ----------
    env : str or gymnasium.Env
        An environment id for ``gymnasium.make`` (e.g. ``"Pendulum-v1"``,
        ``"HopperBulletEnv-v0"``) or an already-built environment.
    log_dir : str, optional
        Folder the videos go to when ``record_video`` is True.
    record_video : bool
        Wrap the environment with ``gymnasium.wrappers.RecordVideo`` (needs ``moviepy``);
        an environment built from an id is then made with ``render_mode="rgb_array"``.
    **make_kwargs
        Passed to ``gymnasium.make`` (e.g. ``max_episode_steps=200``); only with an id.

    Notes
    -----
    Built from an id, the environment pickles as its id and keyword arguments and is made
    anew on unpickling, so copies are cheap and never carry simulator handles. Built from an
    instance, the instance itself is pickled.
    """

    def __init__(
        self,
        env: str | gymnasium.Env,
        log_dir: str | os.PathLike | None = None,
        record_video: bool = False,
        **make_kwargs: Any,
    ) -> None:
        if record_video and log_dir is None:
            raise ValueError(
                "log_dir: expected a folder for the videos when record_video=True, given None"
            )
        self.env_id: str | None = None
        self.make_kwargs: dict[str, Any] = dict(make_kwargs)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.record_video = bool(record_video)
        self.video_prefix = "rl-video"
        self._next_seed: int | None = None
        if isinstance(env, str):
            self.env_id = env
            inner = self._make()
        elif isinstance(env, gymnasium.Env):
            if make_kwargs:
                raise ValueError(
                    "make_kwargs: only allowed when env is an id, given "
                    f"{sorted(make_kwargs)} with env={env!r}"
                )
            inner = self._wrap_video(env)
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
        return self._wrap_video(gymnasium.make(self.env_id, **kwargs))

    def _wrap_video(self, env: gymnasium.Env) -> gymnasium.Env:
        if not self.record_video:
            return env
        from gymnasium.wrappers import RecordVideo

        return RecordVideo(
            env, video_folder=self.log_dir, name_prefix=self.video_prefix, disable_logger=True
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

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the environment.

        Returns
        -------
        obs : observation (``observation_space`` sample)
        info : dict
        """
        if seed is None:
            seed, self._next_seed = self._next_seed, None
        out = self.env.reset(seed=seed, options=options)
        # gymnasium's checker looks for the generator on the outermost Env: share the inner one.
        self._np_random = self.env.unwrapped.np_random
        return out

    def seed(self, seed: int | None = None) -> None:
        """Seed the next ``reset`` (the original machina's and old gym's ``env.seed``)."""
        self._next_seed = seed

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

    def __getstate__(self) -> dict[str, Any]:
        state = {
            "env_id": self.env_id,
            "make_kwargs": self.make_kwargs,
            "log_dir": self.log_dir,
            "record_video": self.record_video,
        }
        if self.env_id is None:
            # No id to re-make from: the (unwrapped-by-video) instance travels itself.
            inner = self.env
            if self.record_video:
                inner = inner.env
            state["env"] = inner
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.env_id = state["env_id"]
        self.make_kwargs = state["make_kwargs"]
        self.log_dir = state["log_dir"]
        self.record_video = state["record_video"]
        self.video_prefix = f"rl-video-{os.getpid()}-{next(_copy_ids)}"
        self._next_seed = None
        if self.env_id is None:
            inner = self._wrap_video(state["env"])
        else:
            inner = self._make()
        self._set_inner(inner)

    def __repr__(self) -> str:
        if self.env_id is not None:
            return f"GymEnv({self.env_id!r}, {self.make_kwargs})"
        return f"GymEnv({self.env!r})"
