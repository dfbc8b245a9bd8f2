"""PyBullet's locomotion, pendulum and reacher tasks as gymnasium 1.x environments.

:func:`register_bullet_envs` registers the familiar ids (``HopperBulletEnv-v0`` ...) with
gymnasium without importing pybullet; pybullet and ``pybullet_envs`` are imported the first
time one of them is made. ``pybullet_envs`` is written against the retired ``gym`` API
(``reset() -> obs``, ``step -> (obs, rew, done, info)``, ``seed()``); :class:`BulletEnv`
adapts one of its environments to gymnasium's:

- ``reset(seed=...) -> (obs, info)``: the seed draws the simulator's own RandomState seed from
  the environment's ``np_random``, so a seeded reset reproduces the episode exactly, whatever
  the environment did before (a walker's first reset is preceded by one of its own: see
  :meth:`BulletEnv.reset`);
- ``step -> (obs, rew, terminated, truncated, info)``: pybullet's ``done`` means the robot
  fell (or the pendulum dropped), a true end, so it is ``terminated``; the time limit is
  gymnasium's ``TimeLimit`` (added by ``gymnasium.make`` from the registered
  ``max_episode_steps``, 1000 for locomotion), reported as ``truncated``;
- ``render_mode="rgb_array"``: ``render()`` returns a (240, 320, 3) uint8 frame;
- observations are float32, as the observation space says.

Example
-------
>>> import gymnasium
>>> from machina.envs.bullet import register_bullet_envs
>>> register_bullet_envs()
>>> env = gymnasium.make("HopperBulletEnv-v0")
>>> obs, info = env.reset(seed=0)
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np

if TYPE_CHECKING:
    from machina.envs._bullet_walker import WalkerStep

# id -> (pybullet_envs class as "module:Class", max_episode_steps, reward_threshold),
# as pybullet_envs/__init__.py registers them.
BULLET_ENVS: dict[str, tuple[str, int, float | None]] = {
    "HalfCheetahBulletEnv-v0": ("gym_locomotion_envs:HalfCheetahBulletEnv", 1000, 3000.0),
    "HopperBulletEnv-v0": ("gym_locomotion_envs:HopperBulletEnv", 1000, 2500.0),
    "Walker2DBulletEnv-v0": ("gym_locomotion_envs:Walker2DBulletEnv", 1000, 2500.0),
    "AntBulletEnv-v0": ("gym_locomotion_envs:AntBulletEnv", 1000, 2500.0),
    "HumanoidBulletEnv-v0": ("gym_locomotion_envs:HumanoidBulletEnv", 1000, None),
    "HumanoidFlagrunBulletEnv-v0": ("gym_locomotion_envs:HumanoidFlagrunBulletEnv", 1000, 2000.0),
    "InvertedPendulumBulletEnv-v0": ("gym_pendulum_envs:InvertedPendulumBulletEnv", 1000, 950.0),
    "InvertedDoublePendulumBulletEnv-v0": (
        "gym_pendulum_envs:InvertedDoublePendulumBulletEnv",
        1000,
        9100.0,
    ),
    "InvertedPendulumSwingupBulletEnv-v0": (
        "gym_pendulum_envs:InvertedPendulumSwingupBulletEnv",
        1000,
        800.0,
    ),
    "ReacherBulletEnv-v0": ("gym_manipulator_envs:ReacherBulletEnv", 150, 18.0),
}

# Frames per second of the simulation as rendered: pybullet_envs' own metadata value.
_RENDER_FPS = 60


def register_bullet_envs() -> None:
    """Register every id of :data:`BULLET_ENVS` with gymnasium. Idempotent, and cheap: it
    imports neither pybullet nor ``pybullet_envs`` (the entry point is resolved when an id is
    made). Ids already registered (by the user or an earlier call) are left as they are."""
    for env_id, (bullet_class, max_episode_steps, reward_threshold) in BULLET_ENVS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            env_id,
            entry_point="machina.envs.bullet:BulletEnv",
            max_episode_steps=max_episode_steps,
            reward_threshold=reward_threshold,
            kwargs={"bullet_class": bullet_class},
        )


def _load_class(bullet_class: str) -> type:
    """Import a ``pybullet_envs`` class ("module:Class") with the stand-in ``gym`` in place."""
    from machina.envs._legacy_gym import legacy_gym_modules

    module_name, _, class_name = bullet_class.partition(":")
    with legacy_gym_modules():
        module = importlib.import_module(f"pybullet_envs.{module_name}")
    return getattr(module, class_name)


@functools.cache
def _bound_client_classes() -> tuple[type, type]:
    """pybullet_utils' ``BulletClient`` and :class:`_BoundClient`'s class, made on first use
    (importing pybullet_utils imports pybullet)."""
    from pybullet_utils.bullet_client import BulletClient

    class _BoundClient(BulletClient):
        """``BulletClient`` keeping each function it binds to the client id.

        The original's ``__getattr__`` binds a new ``functools.partial`` (and asks
        ``inspect.isbuiltin``) at every call: ~2 us, some 40 calls per locomotion step, about
        a tenth of a HalfCheetah step. Bound once, later calls find the function in the
        instance: the same pybullet calls with the same arguments.
        """

        def __getattr__(self, name: str) -> Any:
            attribute = super().__getattr__(name)
            if name == "disconnect":
                # The id may be reused by the next connection: unbind everything, so that a
                # call after close fails as before instead of reaching another simulation.
                for key in [k for k, v in vars(self).items() if isinstance(v, functools.partial)]:
                    del self.__dict__[key]
            elif isinstance(attribute, functools.partial):
                self.__dict__[name] = attribute
            return attribute

    return BulletClient, _BoundClient


def _bind_client(env: Any) -> None:
    """Make ``env``'s pybullet client (``env._p``, created at its first reset) a
    ``_BoundClient``: robot, scene and parts hold the same object, so all of them gain."""
    client = getattr(env, "_p", None)
    plain, bound = _bound_client_classes()
    if type(client) is plain:
        client.__class__ = bound


class BulletEnv(gymnasium.Env):
    """One ``pybullet_envs`` environment behind the gymnasium 1.x API.

    Usually made through ``gymnasium.make(id)`` (which adds the time limit) after
    :func:`register_bullet_envs`, or ``GymEnv(id)``.

    Parameters
    ----------
    bullet_class : str
        The ``pybullet_envs`` class as ``"module:Class"``, e.g.
        ``"gym_locomotion_envs:HopperBulletEnv"``.
    render_mode : {None, "rgb_array"}
        With ``"rgb_array"``, ``render()`` returns a (240, 320, 3) uint8 frame.
    fast_step : bool
        Step the walker tasks (Hopper, Walker2D, HalfCheetah, Ant, Humanoid, HumanoidFlagrun)
        with :class:`machina.envs._bullet_walker.WalkerStep`: pybullet asked in batches, the
        same observations and rewards to the bit, 0.6-0.7x the CPU per step of
        ``pybullet_envs``' own (``example/benchmarks/bench_bullet_client.py``). False:
        ``pybullet_envs``' own step (the other tasks always use it).

    Notes
    -----
    Pickles as its constructor arguments (the simulator connection cannot travel): a copy
    is a fresh, unreset environment.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": _RENDER_FPS}

    def __init__(
        self, bullet_class: str, render_mode: str | None = None, fast_step: bool = True
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: expected None or one of {self.metadata['render_modes']}, "
                f"given {render_mode!r}"
            )
        if not isinstance(bullet_class, str) or ":" not in bullet_class:
            raise ValueError(
                f"bullet_class: expected 'module:Class' of pybullet_envs, given {bullet_class!r}"
            )
        if not isinstance(fast_step, bool):
            raise TypeError(f"fast_step: expected a bool, given {fast_step!r}")
        self.bullet_class = bullet_class
        self.render_mode = render_mode
        self.fast_step = fast_step
        self._walker: WalkerStep | None = None  # made at each reset
        self._started = False  # reset since made, unpickled or closed
        self._env = _load_class(bullet_class)()
        # Spaces are gymnasium's already (the stand-in's gym.spaces is gymnasium.spaces);
        # rebuilt here so they are plain float32 Boxes that carry no pybullet state.
        ob_space, ac_space = self._env.observation_space, self._env.action_space
        self.observation_space = gymnasium.spaces.Box(
            ob_space.low.astype(np.float32), ob_space.high.astype(np.float32), dtype=np.float32
        )
        self.action_space = gymnasium.spaces.Box(
            ac_space.low.astype(np.float32), ac_space.high.astype(np.float32), dtype=np.float32
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode.

        Returns
        -------
        obs : (ob_dim,) float32
        info : dict (empty)
        """
        super().reset(seed=seed)
        if not self._started and getattr(self._env, "stateId", None) == -1:
            # A walker saves the simulator's state at its first reset and restores it at
            # every later one, so its first episode starts otherwise: a reset first, so that
            # every episode, a fresh environment's first included, starts the same way and
            # reset(seed=s) repeats it whatever the environment did before.
            self._env.seed(0)
            self._env.reset()
        # The simulator's robots draw their initial state from a RandomState of their own.
        # Reseeding it from np_random at every reset makes the episode a function of
        # np_random alone: reset(seed=s) reproduces it, and restoring np_random's state
        # (a sampler's state_dict) reproduces the following episodes too.
        self._env.seed(int(self.np_random.integers(2**31 - 1)))
        obs = self._env.reset()
        _bind_client(self._env)
        if self.fast_step:
            from machina.envs._bullet_walker import walker_step_for  # imports pybullet

            self._walker = walker_step_for(self._env)
        self._started = True
        return np.asarray(obs, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance the simulation by one control step.

        Parameters
        ----------
        action : (ac_dim,) array in the action space

        Returns
        -------
        obs : (ob_dim,) float32
        rew : float
        terminated : bool
            pybullet's ``done``: the robot fell, or the pendulum dropped.
        truncated : bool
            Always False here: the time limit is the ``TimeLimit`` wrapper's.
        info : dict
        """
        if not self._started:
            raise RuntimeError(
                f"step: {self.bullet_class} has no episode; call reset() first (a new, "
                "unpickled or closed environment has none)"
            )
        ac = np.asarray(action, dtype=np.float32)
        # pybullet_envs fails on these far from the cause (an IndexError, a bare assert)
        if ac.shape != self.action_space.shape or not np.isfinite(ac).all():
            raise ValueError(
                f"action: expected finite values of shape {self.action_space.shape}, given "
                f"{action!r}"
            )
        stepper = self._walker or self._env
        obs, rew, done, info = stepper.step(ac)
        return np.asarray(obs, dtype=np.float32), float(rew), bool(done), False, dict(info)

    def render(self) -> np.ndarray | None:
        """The current frame, (240, 320, 3) uint8, with ``render_mode="rgb_array"``; else None."""
        if self.render_mode != "rgb_array":
            return None
        frame = self._env.render(mode="rgb_array")
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def close(self) -> None:
        self._walker = None
        self._started = False
        self._env.close()
        # pybullet_envs' environment keeps its disconnected client and scene: a new one, so
        # that a reset after close starts afresh (it failed: "Not connected to physics server")
        self._env = _load_class(self.bullet_class)()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bullet_class, self.render_mode, self.fast_step))

    def __repr__(self) -> str:
        return f"BulletEnv({self.bullet_class!r})"
