"""Parts shared by the off-policy tests (test_algos_*, test_lf_*, test_pols_*): spaces,
constant and peaked Q / V nets, a three-step batch, and the README's off-policy loop."""

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.pols import RandomPol
from machina.samplers import EpiSampler
from machina.traj import Traj

BOX_OB = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
BOX_AC = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
DISCRETE_AC = gym.spaces.Discrete(3)


class ConstQNet(nn.Module):
    """Q(s, a) = c everywhere (a parameter, so optimisers and Polyak averaging work)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, obs, acs):
        return self.c.expand(obs.shape[:-1] + (1,))


def _tiny_batch():
    """Three steps: ordinary, truncated by a time limit (dones=1, terms=0), terminated."""
    return dict(
        obs=torch.zeros(3, 3),
        acs=torch.zeros(3, 1),
        next_obs=torch.ones(3, 3),
        rews=torch.tensor([1.0, 2.0, 3.0]),
        terms=torch.tensor([False, False, True]),
        truncs=torch.tensor([False, True, False]),
        dones=torch.tensor([False, True, True]),
    )


def _traj_from(epis):
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    return traj


class PeakQNet(nn.Module):
    """Q(s, a) = -sum (a - s[:, :d])^2: the argmax is the observation's first dims."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, obs, acs):
        d = acs.shape[-1]
        return -((acs - obs[..., :d]) ** 2).sum(dim=-1, keepdim=True) + self.dummy


def _off_policy_loop(
    env_id,
    pol,
    train,
    max_steps,
    threshold,
    num_envs=1,
    steps_per_iter=200,
    eval_every=2000,
    eval_epis=10,
    before_sample=None,
    first_eval=None,
    seed=0,
):
    """The README's off-policy loop; stops at the first evaluation reaching ``threshold``.

    Returns (deterministic eval return, env steps, mean return of the last sampled episodes).
    """
    env = gym.make(env_id)
    off_traj = Traj(max_steps=100_000)
    next_eval = eval_every if first_eval is None else first_eval
    step, eval_return, train_return = 0, -np.inf, -np.inf
    with EpiSampler(env, pol, num_envs=num_envs, seed=seed) as sampler:
        while step < max_steps:
            if before_sample is not None:
                before_sample(step)
            epis = sampler.sample(pol, max_steps=steps_per_iter)
            traj = _traj_from(epis)
            off_traj.add_traj(traj)
            step += traj.num_step
            train(off_traj, traj.num_step)
            train_return = float(np.mean([epi["rews"].sum() for epi in epis]))
            if step >= next_eval:
                next_eval += eval_every
                eval_epis_ = sampler.sample(pol, max_epis=eval_epis, deterministic=True)
                eval_return = float(np.mean([epi["rews"].sum() for epi in eval_epis_]))
                if eval_return >= threshold:
                    break
    return eval_return, step, train_return


def _pendulum_spaces():
    env = gym.make("Pendulum-v1")
    return env.observation_space, env.action_space


class DeltaNet(nn.Module):
    """Dynamics model from a linear layer of ``(obs, acs)``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, obs, acs):
        return self.layer(torch.cat([obs, acs], dim=-1))


def _random_pendulum_return(seed=0, epis=10):
    """Mean return of uniformly random actions: the baseline the learners must beat."""
    env = gym.make("Pendulum-v1")
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, seed=seed) as sampler:
        return float(np.mean([e["rews"].sum() for e in sampler.sample(pol, max_epis=epis)]))


#: a learner must beat the random policy (about -1200 on Pendulum-v1) by this much
PENDULUM_MARGIN = 700.0
