"""A temporary stand-in for the retired ``gym`` package, used only to import ``pybullet_envs``.

``pybullet_envs`` (shipped with pybullet) still does ``import gym`` and ``from pkg_resources
import parse_version`` at import time, and needs from them only: ``gym.Env`` (a base class),
``gym.spaces.Box``, ``gym.utils.seeding.np_random``, ``gym.__version__`` and a registry that
its ``__init__`` registers its ids into. :func:`legacy_gym_modules` puts small modules
providing exactly that into ``sys.modules`` while those classes are imported, then takes them
out again (and restores whatever was there, a real ``gym`` included), so no fake ``gym`` is
ever visible to the user's program. The imported pybullet modules keep their own reference
to the stand-in, which is all they need afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import types
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium
import numpy as np

_lock = threading.Lock()
# The version pybullet_envs' locomotion code was written against; above 0.9.6 it skips its
# old-API aliases.
_GYM_VERSION = "0.21.0"


class _Env:
    """The old ``gym.Env`` base: pybullet's environments override every method it has."""

    metadata: dict[str, Any] = {}
    spec = None

    @property
    def unwrapped(self) -> _Env:
        return self


def _np_random(seed: int | None = None) -> tuple[np.random.RandomState, int]:
    """Old ``gym.utils.seeding.np_random``: pybullet's robots call ``randint`` on the
    result, which only ``RandomState`` has (not ``numpy.random.Generator``)."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, given {seed!r}")
    return np.random.RandomState(int(seed) % 2**32), int(seed)


class _Registry:
    """Swallows pybullet_envs' own registrations: machina registers under gymnasium itself."""

    def __init__(self) -> None:
        self.env_specs: dict[str, dict[str, Any]] = {}

    def all(self) -> list[Any]:
        return []


def _build_modules() -> dict[str, types.ModuleType]:
    gym = types.ModuleType("gym")
    gym.__version__ = _GYM_VERSION
    gym.Env = _Env
    gym.spaces = gymnasium.spaces  # Box(low, high, dtype=...) has the same signature
    utils = types.ModuleType("gym.utils")
    seeding = types.ModuleType("gym.utils.seeding")
    seeding.np_random = _np_random
    utils.seeding = seeding
    gym.utils = utils
    envs = types.ModuleType("gym.envs")
    registration = types.ModuleType("gym.envs.registration")
    registry = _Registry()

    def register(id: str, *args: Any, **kwargs: Any) -> None:
        registry.env_specs[id] = kwargs

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "pybullet_envs' gym registry is not available: make the environment with "
            "gymnasium.make after importing machina.envs"
        )

    registration.registry = registry
    registration.register = register
    registration.make = unavailable
    registration.spec = unavailable
    envs.registration = registration
    envs.registry = registry
    gym.envs = envs
    gym.error = types.ModuleType("gym.error")
    modules = {
        "gym": gym,
        "gym.spaces": gymnasium.spaces,
        "gym.utils": utils,
        "gym.utils.seeding": seeding,
        "gym.envs": envs,
        "gym.envs.registration": registration,
        "gym.error": gym.error,
    }
    if importlib.util.find_spec("pkg_resources") is None:
        # setuptools >= 81 no longer ships pkg_resources; env_bases only needs parse_version.
        from packaging.version import parse

        pkg_resources = types.ModuleType("pkg_resources")
        pkg_resources.parse_version = parse
        modules["pkg_resources"] = pkg_resources
    return modules


@contextlib.contextmanager
def legacy_gym_modules() -> Iterator[None]:
    """Within the block, ``import gym`` finds the stand-in; after it, ``sys.modules`` and
    ``sys.path`` are as before (pybullet_envs puts its own folder first on ``sys.path``,
    which would shadow the user's modules named ``agents``, ``bullet``, ``examples`` ...)."""
    with _lock:
        modules = _build_modules()
        saved_path = list(sys.path)
        saved = {
            name: mod
            for name, mod in sys.modules.items()
            if name in modules or name == "gym" or name.startswith("gym.")
        }
        for name in saved:
            del sys.modules[name]
        sys.modules.update(modules)
        # pybullet_envs imports its robots as top-level modules (``from robot_locomotors
        # import ...``) from its own folder, which it puts on sys.path only when its first
        # module is imported: put it there for every import made in the block.
        spec = importlib.util.find_spec("pybullet_envs")
        if spec is not None and spec.submodule_search_locations:
            sys.path.insert(0, list(spec.submodule_search_locations)[0])
        try:
            with warnings.catch_warnings():
                # pkg_resources (when present) warns that it is deprecated on import.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
                yield
        finally:
            for name in [n for n in sys.modules if n in modules or n.startswith("gym.")]:
                del sys.modules[name]
            sys.modules.pop("gym", None)
            sys.modules.update(saved)
            sys.path[:] = saved_path
