"""machina.algos.dqn: targets from terms (not dones), errors naming the estimator, CartPole."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from offpolicy_parts import BOX_OB, DISCRETE_AC, ConstQNet, _off_policy_loop, _traj_from

from machina.algos import dqn
from machina.nets import QNet
from machina.pols import ArgmaxQfPol
from machina.vfuncs import DeterministicSAVfunc


def test_train_learns_from_terms_not_dones():
    """One-state chain, reward 1, truncated every step: Q -> 1 / (1 - gamma), not 1."""
    torch.manual_seed(0)
    n, gamma = 64, 0.5
    epis = [
        dict(
            obs=np.zeros((1, 3), np.float32),
            next_obs=np.zeros((1, 3), np.float32),
            acs=np.zeros(1, np.int64),
            rews=np.ones(1, np.float32),
            terms=np.zeros(1, bool),
            truncs=np.ones(1, bool),
            dones=np.ones(1, bool),
        )
        for _ in range(n)
    ]
    ac_space = gym.spaces.Discrete(1)
    qf = DeterministicSAVfunc(BOX_OB, ac_space, ConstQNet(0.0))
    targ_qf = copy.deepcopy(qf)
    optim = torch.optim.SGD(qf.parameters(), lr=0.5)
    dqn.train(_traj_from(epis), qf, targ_qf, optim, 200, 16, 1.0, gamma, log_enable=False)
    assert float(qf.net.c.detach()) == pytest.approx(1.0 / (1.0 - gamma), abs=1e-3)


@pytest.mark.parametrize(
    "missing, hint", [("next_obs", "ef.add_next_obs"), ("terms", "EpiSampler")]
)
def test_train_names_missing_key_and_estimator(rng, missing, hint):
    epis = [
        dict(
            obs=rng.normal(size=(5, 3)).astype(np.float32),
            next_obs=rng.normal(size=(5, 3)).astype(np.float32),
            acs=rng.integers(3, size=5),
            rews=np.ones(5, np.float32),
            terms=np.zeros(5, bool),
            truncs=np.zeros(5, bool),
        )
    ]
    del epis[0][missing]
    qf = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC))
    optim = torch.optim.Adam(qf.parameters())
    with pytest.raises(KeyError, match=f"dqn.train: traj has no '{missing}'.*{hint}"):
        dqn.train(_traj_from(epis), qf, copy.deepcopy(qf), optim, 1, 2, 0.1, 0.9)


def test_dqn_reaches_150_on_cartpole():
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    ob, ac = env.observation_space, env.action_space
    qf = DeterministicSAVfunc(ob, ac, QNet(ob, ac))
    targ_qf = copy.deepcopy(qf)
    pol = ArgmaxQfPol(ob, ac, qf, eps=1.0)
    optim = torch.optim.Adam(qf.parameters(), 1e-3)

    def anneal(step):
        pol.eps = max(0.04, 1.0 - 0.96 * step / 5000)

    def train(off_traj, epoch):
        dqn.train(
            off_traj,
            qf,
            targ_qf,
            optim,
            epoch,
            batch_size=min(128, off_traj.num_step),
            tau=0.005,  # 0.05 lets the Q values diverge far above 1 / (1 - gamma)
            gamma=0.99,
            log_enable=False,
        )

    eval_return, steps, _ = _off_policy_loop(
        "CartPole-v1",
        pol,
        train,
        30_000,
        150.0,
        num_envs=4,
        before_sample=anneal,
        first_eval=6000,  # once epsilon has reached its floor: judge what was learned
    )
    print(f"DQN CartPole-v1: eval return {eval_return:.1f} after {steps} steps")
    assert eval_return >= 150.0
