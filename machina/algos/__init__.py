"""One module per algorithm, each exposing ``train(traj, ...) -> dict``."""

from machina.algos import ddpg, dqn, ppo_clip, ppo_kl, sac, td3, trpo, vpg

__all__ = ["ddpg", "dqn", "ppo_clip", "ppo_kl", "sac", "td3", "trpo", "vpg"]
