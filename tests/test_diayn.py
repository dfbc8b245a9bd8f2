"""DIAYN: pseudo rewards, discriminator loss and training, SAC on the pseudo reward, learning."""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_random_epis
from torch import nn
from torch.testing import assert_close

from machina.algos import diayn, diayn_sac
from machina.envs import GymEnv
from machina.envs.skill_env import SkillEnv
from machina.loss_functional.diayn import (
    cross_ent_diayn,
    diayn_rews,
    skill_accuracy,
    split_skill,
)
from machina.nets import PolNet, QNet
from machina.nets.skill_discrim import SkillDiscrimNet
from machina.pols import RandomPol, TanhGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj.epi_functional import compute_diayn_rews
from machina.vfuncs import DeterministicSAVfunc

K = 4
OB_DIM = 3


def gym_box(n):
    return gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)


def make_skill_epis(rng, n_epi, max_len=30):
    """Random episodes (terminated and truncated ends mixed) from a SkillEnv: obs and
    next_obs end with the one-hot of the episode's skill."""
    epis = make_random_epis(rng, n_epi, max_len, ob_dim=OB_DIM)
    for epi in epis:
        one_hot = np.eye(K, dtype=np.float32)[rng.integers(K)]
        for key in ("obs", "next_obs"):
            epi[key] = np.concatenate([epi[key], np.tile(one_hot, (len(epi[key]), 1))], axis=1)
    return epis


def reference_rews(discrim, epis, ob_key="next_obs"):
    """One step at a time: log q(z|s) - log p(z), from the logits of one state."""
    out = []
    for epi in epis:
        rews = np.empty(len(epi["rews"]), dtype=np.float32)
        for t, ob in enumerate(epi[ob_key]):
            state, z = ob[:OB_DIM], int(np.argmax(ob[OB_DIM:]))
            with torch.no_grad():
                logits = discrim(torch.as_tensor(state)[None])[0].double().numpy()
            log_q = logits[z] - np.log(np.sum(np.exp(logits)))
            rews[t] = log_q - np.log(1.0 / K)
        out.append(rews)
    return out


class ConstLogits(nn.Module):
    """q(z|s) independent of s: logits = b for every state."""

    def __init__(self, b):
        super().__init__()
        self.b = nn.Parameter(torch.as_tensor(b, dtype=torch.float32))

    def forward(self, state):
        if state.shape[-1] != OB_DIM:
            raise AssertionError("the discriminator was shown the skill one-hot")
        return self.b.expand(*state.shape[:-1], K)


# ------------------------------------------------------------------ pseudo rewards
@pytest.mark.parametrize("ob_key", ["next_obs", "obs"])
def test_compute_diayn_rews_matches_a_per_step_reference(rng, ob_key):
    torch.manual_seed(0)
    discrim = SkillDiscrimNet(gym_box(OB_DIM), K, 16, 16)
    epis = make_skill_epis(rng, 12)
    snapshot = copy.deepcopy(epis)
    expected = reference_rews(discrim, epis, ob_key)

    out = compute_diayn_rews(epis, discrim, K, ob_key=ob_key)
    for epi, new, old, exp in zip(epis, out, snapshot, expected):
        assert_close(new["rews"], exp, rtol=1e-5, atol=1e-5)
        assert new["rews"].dtype == np.float32
        assert new["obs"] is epi["obs"] and new["a_is"] is epi["a_is"]  # shared, not copied
        np.testing.assert_array_equal(epi["rews"], old["rews"])  # input untouched

    traj = Traj()
    traj.add_epis(epis)
    before = traj.pending.columns["rews"].copy()
    new_traj = compute_diayn_rews(traj, discrim, K, ob_key=ob_key)
    np.testing.assert_array_equal(traj.pending.columns["rews"], before)
    new_traj.register_epis()
    assert_close(new_traj.data_map["rews"].numpy(), np.concatenate(expected), rtol=1e-5, atol=1e-5)


def test_the_original_rew_giver_form_gives_the_same_rewards(rng):
    """``ef.compute_diayn_rews(traj, lambda x: diayn_sac.calc_rewards(x, K, discrim))``."""
    torch.manual_seed(1)
    discrim = SkillDiscrimNet(gym_box(OB_DIM), K, 16, 16)
    epis = make_skill_epis(rng, 5)
    by_discrim = compute_diayn_rews(epis, discrim, K)
    by_giver = compute_diayn_rews(epis, lambda x: diayn_sac.calc_rewards(x, K, discrim))
    for a, b in zip(by_discrim, by_giver):
        np.testing.assert_array_equal(a["rews"], b["rews"])
    rews, info = diayn_sac.calc_rewards(torch.as_tensor(epis[0]["obs"]), K, discrim)
    assert not rews.requires_grad
    np.testing.assert_array_equal(info["skill"].numpy(), np.argmax(epis[0]["obs"][:, OB_DIM:], 1))


def test_pseudo_reward_closed_forms(rng):
    epis = make_skill_epis(rng, 6)
    obs = torch.as_tensor(np.concatenate([epi["next_obs"] for epi in epis]))
    skill = obs[:, OB_DIM:].argmax(1)
    # a discriminator at chance earns nothing
    assert_close(diayn_rews(ConstLogits([0.0] * K), obs, K), torch.zeros(len(obs)))
    # constant logits: log softmax(b)[z] + log K, whatever the state
    b = torch.tensor([2.0, 0.0, -1.0, 1.0])
    assert_close(diayn_rews(ConstLogits(b), obs, K), (b - b.logsumexp(0))[skill] + math.log(K))

    # a discriminator that reads the skill perfectly earns the maximum, log K
    class Oracle(nn.Module):
        def forward(self, state):
            return 50.0 * F.one_hot(state[:, 0].long(), K).float()

    oracle_obs = obs.clone()
    oracle_obs[:, 0] = skill.float()
    assert_close(diayn_rews(Oracle(), oracle_obs, K), torch.full((len(obs),), math.log(K)))
    assert float(skill_accuracy(Oracle(), oracle_obs, K)) == 1.0


def test_cross_ent_diayn_matches_a_reference(rng):
    torch.manual_seed(2)
    discrim = SkillDiscrimNet(gym_box(OB_DIM), K, 16, 16)
    epis = make_skill_epis(rng, 4)
    batch = {k: torch.as_tensor(np.concatenate([e[k] for e in epis])) for k in ("obs", "next_obs")}
    for key in ("next_obs", "obs"):
        ob = batch[key]
        logits = discrim(ob[:, :OB_DIM])
        expected = -(logits.log_softmax(1)[torch.arange(len(ob)), ob[:, OB_DIM:].argmax(1)]).mean()
        assert_close(cross_ent_diayn(discrim, batch, K, ob_key=key), expected)
    # the loss of a chance-level discriminator is log K
    assert_close(cross_ent_diayn(ConstLogits([0.0] * K), batch, K), torch.tensor(math.log(K)))


def test_skill_discrim_net_features_and_errors():
    torch.manual_seed(3)
    net = SkillDiscrimNet(gym_box(5), K, 8, 8, feature_idx=[0, 3])
    state = torch.randn(7, 5)
    out = net(state)
    assert out.shape == (7, K)
    changed = state.clone()
    changed[:, [1, 2, 4]] += 10.0  # entries outside feature_idx do not matter
    assert_close(net(changed), out)
    assert net(torch.randn(2, 3, 5)).shape == (2, 3, K)
    with pytest.raises(ValueError, match="without the skill one-hot"):
        net(torch.randn(7, 5 + K))
    with pytest.raises(ValueError, match="feature_idx"):
        SkillDiscrimNet(gym_box(5), K, feature_idx=[5])
    with pytest.raises(ValueError, match="num_skill"):
        SkillDiscrimNet(gym_box(5), 1)


def test_errors_name_the_argument(rng):
    epis = make_skill_epis(rng, 2)
    with pytest.raises(ValueError, match="discrim: expected logits of shape"):
        compute_diayn_rews(epis, nn.Linear(OB_DIM, K + 1), K)
    with pytest.raises(ValueError, match="obs: expected"):
        split_skill(torch.zeros(5, K), K)
    for num_skill in (1, 3.0, True):
        with pytest.raises(ValueError, match="num_skill: expected an integer >= 2"):
            split_skill(torch.zeros(5, 8), num_skill)
    # a wrong num_skill, or states without a skill: the trailing entries are not a one-hot
    obs = torch.cat([torch.randn(5, 3), F.one_hot(torch.arange(5) % K, K).float()], -1)
    assert torch.equal(split_skill(obs, K)[1], torch.arange(5) % K)
    for bad, num_skill in ((obs, K - 1), (obs, K + 1), (torch.randn(5, 6), 2)):
        with pytest.warns(RuntimeWarning, match=rf"last num_skill={num_skill} entries to be a"):
            split_skill(bad, num_skill)
    with pytest.raises(ValueError, match="rew_giver: expected one reward per step"):
        compute_diayn_rews(epis, lambda x: (torch.zeros(3), {}))
    no_next = [{k: v for k, v in epi.items() if k != "next_obs"} for epi in epis]
    with pytest.raises(KeyError, match="next_obs"):
        compute_diayn_rews(no_next, ConstLogits([0.0] * K), K)
    traj = Traj()
    traj.add_epis(no_next)
    traj.register_epis()
    with pytest.raises(KeyError, match="diayn.train: on_traj has no 'next_obs'"):
        diayn.train(ConstLogits([0.0] * K), None, traj, 8, 1, K, log_enable=False)
    full = Traj()
    full.add_epis(epis)
    full.register_epis()
    with pytest.raises(
        ValueError, match=f"diayn.train: discrim_batch_size: .*{full.num_step} steps on_traj"
    ):
        diayn.train(ConstLogits([0.0] * K), None, full, full.num_step + 1, 1, K)
    with pytest.raises(KeyError, match="diayn_sac.train: traj has no 'next_obs'"):
        diayn_sac.train(traj, *[None] * 12, ConstLogits([0.0] * K), K)


# ------------------------------------------------------------- discriminator training
def test_diayn_train_learns_to_tell_separable_skills():
    """States of skill z gather around centre z (Bayes accuracy > 0.99): the discriminator
    must become near-perfect on fresh states."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    centres = 4.0 * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float32)

    def states(n):
        skill = rng.integers(K, size=n)
        ob = centres[skill] + rng.normal(size=(n, OB_DIM)).astype(np.float32)
        return np.concatenate([ob, np.eye(K, dtype=np.float32)[skill]], axis=1)

    traj = Traj()
    obs = [states(50) for _ in range(8)]
    traj.add_epis([dict(obs=o, next_obs=o, rews=np.zeros(50, np.float32)) for o in obs])
    traj.register_epis()
    discrim = SkillDiscrimNet(gym_box(OB_DIM), K, 32, 32)
    optim = torch.optim.Adam(discrim.parameters(), 1e-2)
    held_out = torch.as_tensor(states(1000))
    before = float(skill_accuracy(discrim, held_out, K))
    result = diayn.train(discrim, optim, traj, 64, 200, K, log_enable=False)
    after = float(skill_accuracy(discrim, held_out, K))
    assert len(result["DiscrimLoss"]) == len(result["DiscrimAcc"]) == 200
    assert np.mean(result["DiscrimLoss"][-20:]) < 0.5 * np.mean(result["DiscrimLoss"][:20])
    assert after >= 0.95 and after >= before + 0.3, (before, after)


# --------------------------------------------------------------------- DIAYN-SAC
def _pendulum_replay(n_steps, seed=0):
    env = SkillEnv(GymEnv("Pendulum-v1", max_episode_steps=50), K)
    pol = RandomPol(env.observation_space, env.action_space)
    sampler = EpiSampler(env, pol, seed=seed)
    traj = Traj()
    traj.add_epis(sampler.sample(pol, max_steps=n_steps))
    sampler.close()
    traj.register_epis()
    return env, traj


def test_diayn_sac_fits_q_to_the_pseudo_reward_and_keeps_the_replay():
    """With gamma = 0 the soft Q target is the reward alone: the Q functions must learn the
    per-skill pseudo reward of a constant discriminator, not the environment's reward."""
    torch.manual_seed(0)
    env, traj = _pendulum_replay(800)
    env_rews = traj.data_map["rews"].clone()
    ob, ac = env.observation_space, env.action_space
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, 32, 32))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 32, 32)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    b = torch.tensor([2.0, 0.0, -1.0, 1.0])
    discrim = ConstLogits(b)
    result = diayn_sac.train(
        traj,
        pol,
        qfs,
        targ_qfs,
        log_alpha,
        torch.optim.Adam(pol.parameters(), 1e-3),
        [torch.optim.Adam(qf.parameters(), 3e-3) for qf in qfs],
        torch.optim.Adam([log_alpha], 1e-3),
        epoch=600,
        batch_size=128,
        tau=0.01,
        gamma=0.0,
        sampling=1,
        discrim=discrim,
        num_skill=K,
        log_enable=False,
    )
    per_skill = b - b.logsumexp(0) + math.log(K)
    skill = traj.data_map["next_obs"][:, OB_DIM:].argmax(1)
    with torch.no_grad():
        q = qfs[0](traj.data_map["obs"], traj.data_map["acs"])[0]
    assert_close(q, per_skill[skill], atol=0.15, rtol=0.0)
    # the environment's rewards (around -1 to -16) were never the target
    assert float(env_rews.mean()) < -1.0
    torch.testing.assert_close(traj.data_map["rews"], env_rews)  # replay untouched
    assert abs(result["DiaynRew"] - float(per_skill[skill].mean())) < 0.1
    assert {"PolLoss", "QfLoss", "AlphaLoss", "Alpha", "Entropy"} <= set(result)
    # no batch, no reward measured: nan, not 0 (which reads as a discriminator at chance)
    idle = diayn_sac.train(
        traj, pol, qfs, targ_qfs, log_alpha, torch.optim.Adam(pol.parameters()),
        [torch.optim.Adam(qf.parameters()) for qf in qfs], torch.optim.Adam([log_alpha]),
        0, 128, 0.01, 0.0, 1, discrim, K, log_enable=False,
    )  # fmt: skip
    assert math.isnan(idle["DiaynRew"])
    # errors name the function the user called, not the sac.train it steps with
    with pytest.raises(ValueError, match=r"^diayn_sac.train: sampling: expected an int >= 1"):
        diayn_sac.train(
            traj, pol, qfs, targ_qfs, log_alpha, torch.optim.Adam(pol.parameters()),
            [torch.optim.Adam(qf.parameters()) for qf in qfs], torch.optim.Adam([log_alpha]),
            1, 128, 0.01, 0.0, 0, discrim, K, log_enable=False,
        )  # fmt: skip


def _diayn_heldout_accuracy(max_steps, train_pol, seed=0):
    """DIAYN on Pendulum with 4 skills; the discriminator's accuracy on fresh episodes."""
    torch.manual_seed(seed)
    env = SkillEnv(GymEnv("Pendulum-v1", max_episode_steps=100), K)
    ob, ac = env.observation_space, env.action_space
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, 32, 32))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 32, 32)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.tensor(math.log(0.1), requires_grad=True)  # DIAYN's fixed temperature
    optim_pol = torch.optim.Adam(pol.parameters(), 3e-3)
    optim_qfs = [torch.optim.Adam(qf.parameters(), 3e-3) for qf in qfs]
    optim_alpha = torch.optim.Adam([log_alpha], 0.0)
    discrim = SkillDiscrimNet(env.real_observation_space, K, 32, 32)
    optim_discrim = torch.optim.Adam(discrim.parameters(), 3e-3)
    sampler = EpiSampler(env, pol, seed=seed)
    off_traj = Traj(max_steps=100_000)
    total_step = 0
    while total_step < max_steps:
        traj = Traj()
        traj.add_epis(sampler.sample(pol, max_steps=200))
        traj.register_epis()
        off_traj.add_traj(traj)
        total_step += traj.num_step
        diayn.train(discrim, optim_discrim, off_traj, 128, 50, K, log_enable=False)
        if train_pol:
            diayn_sac.train(
                off_traj, pol, qfs, targ_qfs, log_alpha, optim_pol, optim_qfs, optim_alpha,
                traj.num_step, 128, 0.01, 0.9, 1, discrim, K, log_enable=False,
            )  # fmt: skip
    held_out = sampler.sample(pol, max_epis=32)
    sampler.close()
    obs = torch.as_tensor(np.concatenate([epi["next_obs"] for epi in held_out]))
    assert len(set(np.argmax(obs[:, OB_DIM:].numpy(), 1))) >= 3  # most skills represented
    return float(skill_accuracy(discrim, obs, K))


def test_diayn_sac_discovers_distinguishable_skills():
    """Learning test. Chance is 1/4. After 3000 env steps of DIAYN-SAC the discriminator
    must tell the skill of 32 fresh episodes' states at >= 0.6 (2.4x chance; measured 0.83
    at seed 0, 0.82-0.85 at seeds 1-2). Baselines, same loop and budget: the policy left
    untrained, whose skills differ only by its small initial dependence on the one-hot,
    measured 0.33 (0.30 at seed 1); SAC on the environment's reward instead of DIAYN's
    measured 0.38; SAC on the negated DIAYN reward 0.19."""
    untrained = _diayn_heldout_accuracy(3000, train_pol=False)
    trained = _diayn_heldout_accuracy(3000, train_pol=True)
    assert untrained < 0.6, untrained
    assert trained >= 0.6 and trained >= untrained + 0.25, (trained, untrained)
