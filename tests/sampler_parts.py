"""Parts shared by the sampler tests (test_samplers_*): a toy env, seeded policies, episode
checks, and the float32 bound of the numpy fast path against torch."""

import gymnasium as gym
import numpy as np
import torch

from machina.envs import GymEnv
from machina.nets import PolNet, PolNetLSTM
from machina.pols import CategoricalPol, GaussianPol


class ToyEnv(gym.Env):
    """Observation (step, episode); terminates after `length` steps.

    Can raise on a given step or return a NaN observation, in the first `fail_episodes`
    episodes of this instance only (so that a later sample succeeds).
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length=5, fail_at_step=None, nan_at_step=None, fail_episodes=10**9):
        self.length = length
        self.fail_at_step = fail_at_step
        self.nan_at_step = nan_at_step
        self.fail_episodes = fail_episodes
        self.episode = -1
        self.t = 0

    def _obs(self):
        return np.array([self.t, self.episode], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        failing = self.episode < self.fail_episodes
        if failing and self.t == self.fail_at_step:
            raise ValueError(f"boom at step {self.t}")
        obs = self._obs()
        if failing and self.t == self.nan_at_step:
            obs[0] = np.nan
        info = {"t": self.t, "name": "toy", "vec": np.ones(3)}
        return obs, 1.0, self.t >= self.length, False, info


def categorical_pol(env):
    torch.manual_seed(0)
    net = PolNet(env.observation_space, env.action_space)
    return CategoricalPol(env.observation_space, env.action_space, net)


def gaussian_pol(env, rnn=False):
    torch.manual_seed(0)
    if rnn:
        net = PolNetLSTM(env.observation_space, env.action_space)
    else:
        net = PolNet(env.observation_space, env.action_space)
    return GaussianPol(env.observation_space, env.action_space, net, rnn=rnn)


def cartpole(max_episode_steps=20):
    return GymEnv("CartPole-v1", max_episode_steps=max_episode_steps)


def lengths(epis):
    return [len(e["rews"]) for e in epis]
