"""One module per algorithm, each exposing ``train(traj, ...) -> dict``."""

from machina.algos import ppo_clip, ppo_kl, trpo, vpg

__all__ = ["ppo_clip", "ppo_kl", "trpo", "vpg"]
