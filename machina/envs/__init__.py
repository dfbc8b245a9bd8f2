"""Environments: gymnasium wrappers that samplers copy and send to worker processes.

Importing this package registers the PyBullet tasks (``HopperBulletEnv-v0`` ...) with
gymnasium; pybullet itself is imported only when one of them is made.
"""

from machina.envs.ac_in_ob_env import AcInObEnv
from machina.envs.bullet import register_bullet_envs
from machina.envs.c2d_env import C2DEnv
from machina.envs.env_utils import flatten_to_dict
from machina.envs.gym_env import (
    CappedCubicVideoSchedule,
    GymEnv,
    NoVideoSchedule,
    SeedableEnv,
    SeedableRecordVideo,
)
from machina.envs.rew_in_ob_env import RewInObEnv
from machina.envs.skill_env import SkillEnv

register_bullet_envs()

__all__ = [
    "AcInObEnv",
    "C2DEnv",
    "CappedCubicVideoSchedule",
    "GymEnv",
    "NoVideoSchedule",
    "RewInObEnv",
    "SeedableEnv",
    "SeedableRecordVideo",
    "SkillEnv",
    "flatten_to_dict",
    "register_bullet_envs",
]
