"""One module per algorithm, each exposing ``train(traj, ...) -> dict``."""

from machina.algos import (
    ddpg,
    dqn,
    mpc,
    on_pol_teacher_distill,
    ppo_clip,
    ppo_kl,
    sac,
    td3,
    trpo,
    vpg,
)

__all__ = [
    "ddpg",
    "dqn",
    "mpc",
    "on_pol_teacher_distill",
    "ppo_clip",
    "ppo_kl",
    "sac",
    "td3",
    "trpo",
    "vpg",
]
