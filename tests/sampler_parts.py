"""Parts shared by the sampler tests (test_samplers_*): a toy env, seeded policies, episode
checks, and the float32 bound of the numpy fast path against torch."""

import gymnasium as gym
import numpy as np
import torch
from conftest import U

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


# ulps of the layers' magnitudes allowed per layer and per path (see float32_tolerances)
ULPS_PER_LAYER = 4


def float32_tolerances(pol, obs):
    """Per-entry bounds on |fast - torch| for an MLP policy's outputs on ``obs (B, ...)``
    (float32 arithmetic, so the same bounds hold on any CPU).

    Both paths compute the same layers in float32 but sum in different orders (BLAS kernels
    and torch's differ by CPU), so each lands a few ulps of the *magnitudes* summed away
    from the exact value: for y = W h + b, of |W| |h| + |b|, chained through the layers
    (ReLU does not grow errors). The bound allowed is ``ULPS_PER_LAYER`` ulps of that
    magnitude per layer and per path; measured on an Intel Xeon over many batches, each path
    was within 0.11 ulp of it. (Higham's rigorous bound, k ulps for k terms per layer, is a
    hundred times looser and would test nothing.) Elementwise functions add a few ulps each:
    tanh (1-Lipschitz, for the mean), exp, the sum and the division of softmax (for pi).

    Returns
    -------
    dict with ``z`` (B, out) for the head's output, then ``mean`` and ``ac`` (a sampled action
    before scaling) for a Gaussian, or ``pi`` for a categorical policy, each (B, out).
    """
    spec = pol.numpy_inference()
    z = obs.reshape(len(obs), -1).astype(np.float64)  # the head's output, in float64
    magnitude = np.abs(z)
    for i, (weight, bias) in enumerate(spec["layers"]):
        weight, bias = weight.astype(np.float64), bias.astype(np.float64)
        magnitude = magnitude @ np.abs(weight).T + np.abs(bias)
        z = z @ weight.T + bias
        z = np.maximum(z, 0.0) if i < len(spec["layers"]) - 1 else z
    depth = len(spec["layers"])
    diff = 2 * ULPS_PER_LAYER * depth * U * magnitude  # two paths, each off by that much
    tol = {"z": diff}
    if spec["kind"] == "gaussian":
        # tanh: its slope at most 1 - tanh^2 over [|z| - dz, |z|]; a few ulps per path
        slope = 1.0 - np.tanh(np.maximum(np.abs(z) - diff, 0.0)) ** 2
        tol["mean"] = slope * diff + 8 * U
        # ac = mean + exp(log_std) * noise, |noise| < 8; exp a few ulps per path
        std = np.exp(spec["log_std"].astype(np.float64))
        tol["ac"] = tol["mean"] + 8 * U * (1.0 + 8.0 * std)
    else:
        # pi_i = 1 / sum_j exp(z_j - z_i): log pi_i moves by at most 2 max|dz|; exp, the sum
        # of n terms and the division add (n + 4) ulps per path
        n = diff.shape[1]
        dz = diff.max(axis=1, keepdims=True)
        with torch.no_grad():
            pi = pol.pd_params(torch.from_numpy(obs))["pi"].double().numpy()
        tol["pi"] = pi * (np.expm1(2 * dz) + 2 * (n + 4) * U)
    return tol
