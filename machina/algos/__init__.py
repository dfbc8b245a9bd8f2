"""One module per algorithm, each exposing ``train(traj, ...) -> dict``."""

from machina.algos import (
    airl,
    behavior_clone,
    ddpg,
    diayn,
    diayn_sac,
    dqn,
    gail,
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
    "airl",
    "behavior_clone",
    "ddpg",
    "diayn",
    "diayn_sac",
    "dqn",
    "gail",
    "mpc",
    "on_pol_teacher_distill",
    "ppo_clip",
    "ppo_kl",
    "sac",
    "td3",
    "trpo",
    "vpg",
]
