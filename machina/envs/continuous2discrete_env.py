"""``C2DEnv`` under machina 0.x's module name (``machina.envs.continuous2discrete_env``)."""

from machina.envs.c2d_env import C2DEnv

__all__ = ["C2DEnv"]
