"""Environments: gymnasium wrappers that samplers copy and send to worker processes."""

from machina.envs.c2d_env import C2DEnv
from machina.envs.gym_env import GymEnv

__all__ = ["C2DEnv", "GymEnv"]
