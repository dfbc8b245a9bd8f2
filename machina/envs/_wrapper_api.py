"""What every machina environment wrapper offers beyond gymnasium's ``Wrapper``."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium


class WrapperAPI:
    """``horizon``, ``original_env`` and ``terminate()`` for a ``gymnasium.Wrapper`` subclass.

    The names of machina 0.x's wrappers, which scripts and samplers ask any machina
    environment for, whatever it wraps.
    """

    env: gymnasium.Env

    @property
    def horizon(self) -> int | None:
        """Time limit of an episode (the inner ``horizon`` or ``max_episode_steps``), or None
        when unlimited."""
        inner = getattr(self.env, "horizon", None)
        if inner is not None:
            return inner
        spec = self.env.spec
        return None if spec is None else spec.max_episode_steps

    @property
    def original_env(self) -> gymnasium.Env:
        """The innermost environment given to a ``GymEnv`` (or the wrapped one)."""
        return getattr(self.env, "original_env", self.env)

    close: Callable[[], None]  # gymnasium.Wrapper's, later in the MRO

    def terminate(self) -> None:
        """Close the environment (machina 0.x's name)."""
        self.close()
