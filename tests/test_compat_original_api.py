"""Scripts written against machina 0.x's API (positional orders, defaults, result keys and
names), with only gymnasium's world changes, keep running (issue 14).

Each test is a short script in the original's style; nets are tiny and runs a few steps.
"""

import copy
import functools
import os
import pickle
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import machina
from machina import logger
from machina import loss_functional as lf
from machina.algos import (
    airl,
    behavior_clone,
    ddpg,
    diayn,
    gail,
    mpc,
    on_pol_teacher_distill,
    ppo_clip,
    ppo_kl,
    trpo,
    vpg,
)
from machina.envs import (
    C2DEnv,
    CappedCubicVideoSchedule,
    GymEnv,
    NoVideoSchedule,
    SkillEnv,
    flatten_to_dict,
)
from machina.models import BaseModel, DeterministicSModel
from machina.noise import OUActionNoise
from machina.pols import (
    ArgmaxQfPol,
    CategoricalPol,
    DeterministicActionNoisePol,
    GaussianPol,
    MultiCategoricalPol,
)
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import (
    BaseSAVfunc,
    BaseSVfunc,
    DeterministicSAVfunc,
    DeterministicSVfunc,
    NormalizedDeterministicSVfunc,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------- nets in the original's style
class PolNet(nn.Module):
    def __init__(self, ob_space, ac_space, h=16):
        super().__init__()
        self.fc1 = nn.Linear(ob_space.shape[0], h)
        self.discrete = isinstance(ac_space, gym.spaces.Discrete)
        if self.discrete:
            self.out = nn.Linear(h, ac_space.n)
        else:
            self.mean = nn.Linear(h, ac_space.shape[0])
            self.log_std = nn.Parameter(torch.full((ac_space.shape[0],), -0.5))

    def forward(self, ob):
        h = torch.relu(self.fc1(ob))
        if self.discrete:
            return torch.softmax(self.out(h), dim=-1)
        return torch.tanh(self.mean(h)), self.log_std.expand_as(self.mean(h))


class DeterministicPolNet(nn.Module):
    def __init__(self, ob_space, ac_space, h=16):
        super().__init__()
        self.fc1 = nn.Linear(ob_space.shape[0], h)
        self.mean = nn.Linear(h, ac_space.shape[0])

    def forward(self, ob):
        return torch.tanh(self.mean(torch.relu(self.fc1(ob))))


class VNet(nn.Module):
    def __init__(self, ob_space, h=16, out=1):
        super().__init__()
        self.fc1 = nn.Linear(ob_space.shape[0], h)
        self.out = nn.Linear(h, out)

    def forward(self, ob):
        return self.out(torch.relu(self.fc1(ob)))


class QNet(nn.Module):
    def __init__(self, ob_space, ac_space, h=16):
        super().__init__()
        self.fc1 = nn.Linear(ob_space.shape[0] + ac_space.shape[0], h)
        self.out = nn.Linear(h, 1)

    def forward(self, ob, ac):
        return self.out(torch.relu(self.fc1(torch.cat([ob, ac], dim=-1))))


class DiscrimNet(nn.Module):
    def __init__(self, ob_space, ac_space, h=16):
        super().__init__()
        self.fc1 = nn.Linear(ob_space.shape[0] + ac_space.shape[0], h)
        self.out = nn.Linear(h, 1)

    def forward(self, ob, ac):
        return self.out(torch.relu(self.fc1(torch.cat([ob, ac], dim=-1))))


def on_policy_traj(env, pol, vf, max_steps=120, seed=0):
    sampler = EpiSampler(env, pol, num_parallel=1, seed=seed)
    epis = sampler.sample(pol, max_steps=max_steps)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, vf)
    traj = ef.compute_rets(traj, 0.99)
    traj = ef.compute_advs(traj, 0.99, 0.95)
    traj = ef.centerize_advs(traj)
    traj = ef.compute_h_masks(traj)
    traj.register_epis()
    return traj


@pytest.fixture(scope="module")
def pendulum():
    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1", max_episode_steps=20)
    pol = GaussianPol(env.observation_space, env.action_space, PolNet(*_spaces(env)))
    vf = DeterministicSVfunc(env.observation_space, VNet(env.observation_space))
    return env, pol, vf, on_policy_traj(env, pol, vf)


def _spaces(env):
    return env.observation_space, env.action_space


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


def test_behavior_clone_with_a_batch_above_the_expert_steps(pendulum):
    """0.x's own test clones 200 expert steps with behavior_clone.train(traj, pol, optim,
    256): one batch of all the steps (as mpc.train_dm and the Traj's iterate, which warns)."""
    _, shared_pol, _, traj = pendulum
    pol = copy.deepcopy(shared_pol)  # the module's fixture stays as the other tests expect
    optim = torch.optim.Adam(pol.parameters(), 1e-3)
    before = _params(pol)
    result = behavior_clone.train(traj, pol, optim, traj.num_step + 56)
    assert len(result["PolLoss"]) == 1 and _changed(before, pol)
    with pytest.warns(UserWarning, match="is larger than the steps to iterate over"):
        assert len(next(traj.iterate(traj.num_step + 56))["obs"]) == traj.num_step


# --------------------------------------------------------------------------- on-policy
def test_trpo_with_entropy_bonus_and_update_helpers(pendulum):
    env, pol, vf, traj = pendulum
    pol, vf = copy.deepcopy(pol), copy.deepcopy(vf)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    before = _params(pol)
    result = trpo.train(traj, pol, vf, optim_vf, 1, 24, 1, 0.01, 10, 0.1, 0.01, False)
    assert set(result) >= {"PolLoss", "VfLoss"} and _changed(before, pol)

    batch = dict(traj.data_map)
    # the original's order: (pol, batch, make_kl, max_kl, damping, num_cg, ent_beta)
    loss = trpo.update_pol(pol, batch, trpo.make_kl, 0.01, 0.1, 10, 0.01)
    assert np.isfinite(np.mean([loss, loss]))  # used as the loss, as 0.x returned it
    value, kl = loss  # and unpacks as (loss, kl)
    assert value == float(loss) and 0.0 <= kl <= 1.5 * 0.01
    # the order of machina 1.0's first release: (pol, batch, max_kl, num_cg, damping)
    _, kl = trpo.update_pol(pol, batch, 0.001, 5, 0.1)
    assert kl <= 1.5 * 0.001
    # a make_kl of the user's own is called for the metric
    calls = []

    def my_kl(pol_, batch_):
        calls.append(1)
        return trpo.make_kl(pol_, batch_)

    trpo.update_pol(pol, batch, make_kl=my_kl, max_kl=0.01)
    assert calls
    assert np.isfinite(trpo.update_vf(vf, optim_vf, batch))
    x = trpo.conjugate_gradients(Avp=lambda v: 2 * v, b=torch.ones(3), nsteps=5)
    torch.testing.assert_close(x, torch.full((3,), 0.5))


def test_ppo_and_vpg_update_helpers_and_large_batch(pendulum):
    env, pol, vf, traj = pendulum
    pol, vf = copy.deepcopy(pol), copy.deepcopy(vf)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    batch = next(traj.iterate(32, 1))
    for loss in (
        ppo_clip.update_pol(pol, optim_pol, batch, 0.2, 0.0, 0.5),
        ppo_clip.update_vf(vf, optim_vf, batch, 0.2, False, 0.5),
        ppo_kl.update_pol(pol, optim_pol, batch, 1.0, 0.5),
        ppo_kl.update_vf(vf, optim_vf, batch),
        vpg.update_pol(pol, optim_pol, batch),
        vpg.update_vf(vf, optim_vf, batch),
    ):
        assert np.isfinite(loss)
    # the original's positional (..., epoch, batch_size, large_batch, log_enable)
    result = vpg.train(traj, pol, vf, optim_pol, optim_vf, 3, 32, True, False)
    assert len(result["PolLoss"]) == 3  # one whole-Traj batch per epoch
    result = vpg.train(traj, pol, vf, optim_pol, optim_vf, 1, 32, False, False)
    assert len(result["PolLoss"]) == -(-traj.num_step // 32)


def test_teacher_distill_and_mpc_update_helpers(pendulum):
    env, pol, vf, traj = pendulum
    student = copy.deepcopy(pol)
    optim = torch.optim.Adam(student.parameters(), 1e-3)
    batch = next(traj.iterate(32, 1))
    assert np.isfinite(on_pol_teacher_distill.update_pol(student, pol, optim, batch))
    dm = DeterministicSModel(*_spaces(env), DeltaNet(env))
    optim_dm = torch.optim.Adam(dm.parameters(), 1e-3)
    assert np.isfinite(mpc.update_dm(dm, optim_dm, batch))
    assert np.isfinite(mpc.update_dm(dm, optim_dm, batch, td=False))
    assert float(lf.dynamics(dm, batch, target="next_obs", td=False).detach()) >= 0.0


class DeltaNet(nn.Module):
    def __init__(self, env):
        super().__init__()
        ob_dim, ac_dim = env.observation_space.shape[0], env.action_space.shape[0]
        self.fc = nn.Linear(ob_dim + ac_dim, ob_dim)

    def forward(self, ob, ac):
        return self.fc(torch.cat([ob, ac], dim=-1))


# -------------------------------------------------------------------------- off-policy
@pytest.fixture(scope="module")
def pendulum_replay():
    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1", max_episode_steps=20)
    pol = DeterministicActionNoisePol(
        *_spaces(env), DeterministicPolNet(*_spaces(env)), OUActionNoise(env.action_space)
    )
    sampler = EpiSampler(env, pol, num_parallel=1, seed=0)
    traj = Traj()
    traj.add_epis(sampler.sample(pol, max_steps=80))
    traj = ef.add_next_obs(traj)
    traj.register_epis()
    return env, pol, traj


@pytest.mark.parametrize("order", ["original", "current"])
def test_ddpg_train_in_both_argument_orders(pendulum_replay, order):
    env, pol, traj = pendulum_replay
    pol = copy.deepcopy(pol)
    targ_pol = copy.deepcopy(pol)
    qf = DeterministicSAVfunc(*_spaces(env), QNet(*_spaces(env)))
    targ_qf = copy.deepcopy(qf)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_qf = torch.optim.Adam(qf.parameters(), 1e-3)
    pol_before, qf_before = _params(pol), _params(qf)
    targ_pol_before, targ_qf_before = _params(targ_pol), _params(targ_qf)
    if order == "original":
        result = ddpg.train(
            traj, pol, targ_pol, qf, targ_qf, optim_pol, optim_qf, 2, 16, 0.01, 0.9, False
        )
    else:
        result = ddpg.train(
            traj, pol, qf, targ_pol, targ_qf, optim_pol, optim_qf, 2, 16, 0.01, 0.9, False
        )
    assert len(result["PolLoss"]) == len(result["QfLoss"]) == 2
    assert _changed(pol_before, pol) and _changed(qf_before, qf)
    # each target moved toward its own network (a swap would fail on the shapes)
    assert _changed(targ_pol_before, targ_pol) and _changed(targ_qf_before, targ_qf)


def test_sac_and_bellman_losses_callable_as_functions(pendulum_replay):
    env, _, traj = pendulum_replay
    torch.manual_seed(0)
    pol = GaussianPol(*_spaces(env), PolNet(*_spaces(env)))
    qfs = [DeterministicSAVfunc(*_spaces(env), QNet(*_spaces(env))) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = nn.Parameter(torch.zeros(()))
    batch = next(traj.random_batch(16, 1))
    pol_loss, qf_losses, alpha_loss = lf.sac(pol, qfs, targ_qfs, log_alpha, batch, 0.99)
    assert len(qf_losses) == 2 and pol_loss.requires_grad and alpha_loss.requires_grad
    pol_loss, _, _ = lf.sac(
        pol,
        qfs,
        targ_qfs,
        log_alpha,
        batch,
        0.99,
        2,
        False,
        True,  # likelihood ratio
    )
    assert torch.isfinite(pol_loss)
    assert callable(lf.sac.sac_targets)  # the module's functions are still there
    # lf.bellman: the original's (continuous, deterministic, sampling, reduction)
    targ_pol = copy.deepcopy(pol)
    mean = lf.bellman(qfs[0], targ_qfs[0], targ_pol, batch, 0.99, True, True, 1)
    per_step = lf.bellman(qfs[0], targ_qfs[0], targ_pol, batch, 0.99, reduction="none")
    total = lf.bellman(qfs[0], targ_qfs[0], targ_pol, batch, 0.99, reduction="sum")
    assert per_step.shape == (16,)
    torch.manual_seed(1)
    assert torch.isfinite(lf.bellman(qfs[0], targ_qfs[0], targ_pol, batch, 0.99, 3))
    assert float(mean) >= 0 and float(total) >= 0
    assert torch.isfinite(lf.ag(pol, qfs[0], batch, no_noise=True))
    with pytest.raises(ValueError, match="continuous"):
        lf.bellman(qfs[0], targ_qfs[0], targ_pol, batch, 0.99, False)


def test_argmax_qf_pol_in_the_original_order():
    ob = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    ac = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    from machina.vfuncs import CEMDeterministicSAVfunc

    qf = CEMDeterministicSAVfunc(ob, ac, QNet(ob, ac), num_sampling=8, num_iter=1)
    pol = ArgmaxQfPol(ob, ac, qf)
    assert pol.eps == 0.2 and pol.rnn is False
    pol = ArgmaxQfPol(ob, ac, qf, False, True, 0.5)  # (rnn, normalize_ac, eps)
    assert pol.eps == 0.5 and pol.normalize_ac
    assert ArgmaxQfPol(ob, ac, qf, 0.1).eps == 0.1  # 1.0's (qfunc, eps) positional order
    with pytest.raises(ValueError, match="rnn"):
        ArgmaxQfPol(ob, ac, qf, True)


def test_categorical_policies_take_normalize_ac():
    ob = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    pol = CategoricalPol(
        ob, gym.spaces.Discrete(2), PolNet(ob, gym.spaces.Discrete(2)), False, True
    )
    assert pol.normalize_ac
    multi = gym.spaces.MultiDiscrete([2, 2])

    class MultiNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, ob):
            return torch.softmax(self.fc(ob).reshape(*ob.shape[:-1], 2, 2), dim=-1)

    MultiCategoricalPol(ob, multi, MultiNet(), normalize_ac=False)


# ------------------------------------------------------------------------- imitation
@pytest.fixture(scope="module")
def imitation(pendulum):
    env, pol, vf, traj = pendulum
    expert = on_policy_traj(env, pol, vf, max_steps=60, seed=1)
    return env, pol, vf, traj, expert


def test_gail_in_the_original_style_with_kl_results(imitation):
    env, pol, vf, traj, expert = imitation
    pol, vf = copy.deepcopy(pol), copy.deepcopy(vf)
    discrim = DeterministicSAVfunc(*_spaces(env), DiscrimNet(*_spaces(env)))
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    optim_discrim = torch.optim.Adam(discrim.parameters(), 1e-3)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    result = gail.train(
        traj, expert, pol, vf, discrim, optim_vf, optim_discrim,
        rl_type="trpo", pol_ent_beta=0.01, epoch=1, batch_size=32, discrim_batch_size=16,
        discrim_step=1, log_enable=False,
    )  # fmt: skip
    assert {"PolLoss", "VfLoss", "DiscrimLoss", "new_kl_beta", "kl_mean"} <= set(result)
    result = gail.train(
        traj,
        expert,
        pol,
        vf,
        discrim,
        optim_vf,
        optim_discrim,
        "ppo_clip",
        0.0,
        0.0,
        1,
        32,
        16,
        1,
        1,
        0.1,
        0.01,
        10,
        optim_pol,
        0.2,
        0.5,
        False,
        1,
        0.01,
        False,
    )  # fmt: skip  (the original's 25 positional arguments, log_enable last)
    assert result["new_kl_beta"] == 0 and result["kl_mean"] == 0
    # the inner RL step as a callable (issue 15)
    step = functools.partial(
        ppo_clip.train, pol=pol, vf=vf, optim_pol=optim_pol, optim_vf=optim_vf, epoch=1,
        batch_size=32, log_enable=False,
    )  # fmt: skip
    before = _params(pol)
    result = gail.train(traj, expert, pol, vf, discrim, optim_vf, optim_discrim, rl_type=step)
    assert {"PolLoss", "DiscrimLoss"} <= set(result) and _changed(before, pol)
    with pytest.raises(TypeError, match="rl_type"):
        gail.train(traj, expert, pol, vf, discrim, optim_vf, optim_discrim, rl_type=lambda t: 1)


def test_gail_script_reads_real_rews_of_the_sampled_episodes(pendulum):
    """0.x's run_gail.py / run_airl.py log ``epi['real_rews']`` of the sampled episodes after
    the pseudo-reward estimator (which wrote it there in 0.x); the estimators are pure, and
    the sampled episodes answer it with their own rewards, unchanged."""
    env, pol, _, _ = pendulum
    discrim = DeterministicSAVfunc(*_spaces(env), DiscrimNet(*_spaces(env)))
    epis = EpiSampler(env, pol, num_parallel=1, seed=3).sample(pol, max_steps=40)
    agent_traj = Traj()
    agent_traj.add_epis(epis)
    agent_traj = ef.compute_pseudo_rews(agent_traj, discrim)
    agent_traj.register_epis()
    rewards = [np.sum(epi["real_rews"]) for epi in epis]  # the script's lines
    assert rewards == [np.sum(epi["rews"]) for epi in epis]
    real = agent_traj.data_map["real_rews"].numpy()
    np.testing.assert_array_equal(real, np.concatenate([epi["real_rews"] for epi in epis]))
    assert not np.array_equal(agent_traj.data_map["rews"].numpy(), real)
    assert all("real_rews" not in epi for epi in epis)  # pure: nothing was written
    with pytest.raises(KeyError, match="vs"):
        epis[0]["vs"]
    assert type(pickle.loads(pickle.dumps(epis[0]))) is dict  # files of episodes: plain dicts


def test_airl_in_the_original_positional_order(imitation):
    env, pol, vf, traj, expert = imitation
    pol, vf = copy.deepcopy(pol), copy.deepcopy(vf)
    rewf = DeterministicSVfunc(env.observation_space, VNet(env.observation_space))
    shaping_vf = DeterministicSVfunc(env.observation_space, VNet(env.observation_space))
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    optim_discrim = torch.optim.Adam(list(rewf.parameters()) + list(shaping_vf.parameters()), 1e-3)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    rewf_before = _params(rewf)
    result = airl.train(
        traj,
        expert,
        pol,
        vf,
        optim_vf,
        optim_discrim,
        rewf,
        shaping_vf,
        None,
        "ppo_kl",
        0.0,
        1,
        32,
        16,
        1,
        1,
        0.1,
        0.01,
        10,
        optim_pol,
        0.2,
        0.5,
        False,
        1.0,
        0.01,
        0.99,
        False,
    )  # fmt: skip  (the original's 27 positional arguments)
    assert {"new_kl_beta", "kl_mean", "DiscrimLoss"} <= set(result)
    assert result["new_kl_beta"] in (1.0 / 1.5, 1.0, 1.5) and _changed(rewf_before, rewf)
    step = functools.partial(trpo.train, pol=pol, vf=vf, optim_vf=optim_vf, log_enable=False)
    result = airl.train(
        traj, expert, pol, vf, optim_vf, optim_discrim, rewf, shaping_vf, rl_type=step,
        gamma=0.99, log_enable=False,
    )  # fmt: skip
    assert "KL" in result and result["kl_mean"] == result["KL"][-1]


# ------------------------------------------------------------------------------ DIAYN
def test_diayn_train_returns_the_list_of_losses():
    ob = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    num_skill = 3
    rng = np.random.default_rng(0)
    traj = Traj()
    for skill in range(num_skill):
        obs = np.concatenate(
            [rng.normal(size=(10, 2)), np.tile(np.eye(num_skill)[skill], (10, 1))], axis=1
        ).astype(np.float32)
        traj.add_epis([dict(obs=obs, next_obs=obs, rews=np.zeros(10, np.float32))])
    traj.register_epis()
    # the original's discriminator: a DeterministicSVfunc over a multi-output net
    discrim = DeterministicSVfunc(ob, VNet(ob, out=num_skill))
    optim = torch.optim.Adam(discrim.parameters(), 1e-2)
    losses = diayn.train(discrim, optim, traj, 8, 5, num_skill)
    assert isinstance(losses, list) and len(losses) == 5 and np.isfinite(np.mean(losses))
    assert losses["DiscrimLoss"] == list(losses) and len(losses["DiscrimAcc"]) == 5
    assert dict(losses).keys() == {"DiscrimLoss", "DiscrimAcc"}


# --------------------------------------------------------------------- value functions
def test_value_function_bases_and_multi_output_and_normalized():
    ob = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    ac = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    vf = DeterministicSVfunc(ob, VNet(ob, out=4))
    vs, info = vf(torch.zeros(5, 3))
    assert vs.shape == (5, 4) and isinstance(vf, BaseSVfunc)
    assert isinstance(DeterministicSAVfunc(ob, ac, QNet(ob, ac)), BaseSAVfunc)
    assert isinstance(
        DeterministicSModel(ob, gym.spaces.Box(-1, 1, (3,)), DeltaNetFor(3, 3)), BaseModel
    )
    norm = NormalizedDeterministicSVfunc(ob, VNet(ob))
    raw, _ = DeterministicSVfunc.forward(norm, torch.zeros(2, 3))
    norm.set_mean(torch.tensor(3.0))
    norm.set_std(torch.tensor(2.0))
    torch.testing.assert_close(norm(torch.zeros(2, 3))[0], raw * 2.0 + 3.0)
    assert vf._check_obs_shape(torch.zeros(3)).shape == (1, 3)
    # the original's module paths
    from machina.models.base import BaseModel as B
    from machina.vfuncs.state_action_vfuncs.cem_state_action_vfunc import (
        CEMDeterministicSAVfunc,
    )
    from machina.vfuncs.state_vfuncs.deterministic_state_vfunc import (
        NormalizedDeterministicSVfunc as N,
    )

    assert B is BaseModel and N is NormalizedDeterministicSVfunc and CEMDeterministicSAVfunc


class DeltaNetFor(nn.Module):
    def __init__(self, ob_dim, ac_dim):
        super().__init__()
        self.fc = nn.Linear(ob_dim + ac_dim, ob_dim)

    def forward(self, ob, ac):
        return self.fc(torch.cat([ob, ac], dim=-1))


# -------------------------------------------------------------------------------- envs
def test_gym_env_in_the_original_signature(tmp_path):
    env = GymEnv("Pendulum-v1", False, None, str(tmp_path), False)
    assert env.log_dir == str(tmp_path) and not env.record_video and env.horizon == 200
    env.env.seed(5)  # the original examples' env.env.seed(args.seed)
    first = env.reset()[0]
    env.original_env.seed(5)  # 0.x's run_mixed_env.py seeds this way
    np.testing.assert_array_equal(env.reset()[0], first)
    assert env.original_env.spec.id == "Pendulum-v1"
    env.terminate()
    env = GymEnv("CartPole-v1", str(tmp_path))  # 1.0's (env, log_dir) order
    assert env.log_dir == str(tmp_path) and not env.record_video
    schedule = CappedCubicVideoSchedule()
    assert [c for c in range(30) if schedule(c)] == [0, 1, 8, 27] and schedule(2000)
    assert not NoVideoSchedule()(0)


def test_wrappers_keep_horizon_original_env_and_terminate():
    base = GymEnv("Pendulum-v1", max_episode_steps=30)
    skill = SkillEnv(base, 4)
    c2d = C2DEnv(base)
    assert skill.horizon == c2d.horizon == 30
    assert c2d.n_bins == 30 and c2d.action_space.nvec.tolist() == [30]
    assert skill.original_env is base.original_env and c2d.original_env is base.original_env
    c2d.reset(seed=0)
    with pytest.warns(UserWarning, match="using the first 1"):
        c2d.step([3, 10])  # 0.x ignored indices beyond the action's dimension
    c2d.terminate()


def test_flatten_to_dict_splits_flat_observations():
    space = gym.spaces.Dict(
        {"angle": gym.spaces.Box(-1, 1, (2,)), "vel": gym.spaces.Box(-1, 1, (1, 1))}
    )
    flat = np.arange(6, dtype=np.float32).reshape(2, 3)
    parts = flatten_to_dict(flat, space)
    np.testing.assert_array_equal(parts["angle"], [[0, 1], [3, 4]])
    assert parts["vel"].shape == (2, 1, 1)
    parts = flatten_to_dict(torch.as_tensor(flat), space, ["vel", "angle"])
    assert list(parts) == ["vel", "angle"] and parts["vel"].shape == (2, 1, 1)


# ------------------------------------------------------------------------------ logger
def test_logger_log_prefix_argument_and_record_results_bc(tmp_path, capsys):
    logger.push_prefix("[bc] ")
    try:
        logger.log("with prefix")
        logger.log("without prefix", False)  # 0.x's second argument: with_prefix
        logger.log("bare", False, False)
    finally:
        logger.pop_prefix()
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("| [bc] with prefix") and out[1].endswith("| without prefix")
    assert out[2] == "bare"
    score_file = str(tmp_path / "progress.csv")
    for epoch in range(2):
        png = logger.record_results_bc(
            str(tmp_path), {"PolLoss": [0.5, 0.25]}, score_file, epoch, rewards=[1.0, 2.0]
        )
    logger.remove_tabular_output(score_file)
    header = open(score_file).readline()
    assert "CurrentEpoch" in header and "RewardAverage" in header and os.path.exists(png)


# ----------------------------------------------------------------------------- package
def test_version_matches_setup_py_and_subpackages_load_on_use():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert re.search(r'version="([^"]+)"', setup).group(1) == machina.__version__
    import machina as mc

    assert mc.algos.ppo_clip.train is ppo_clip.train


def test_gymnasium_checker_has_nothing_to_say_about_seed():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(GymEnv("CartPole-v1"), skip_render_check=True)
    assert not [w for w in caught if "seed" in str(w.message)]


# ----------------------------------------------------------------------- recurrent MPC
class ModelNetLSTM(nn.Module):
    """A recurrent dynamics net in the original's style: hidden state (B, cell)."""

    def __init__(self, ob_space, ac_space, cell=8):
        super().__init__()
        self.cell_size = cell
        self.cell = nn.LSTMCell(ob_space.shape[0] + ac_space.shape[0], cell)
        self.out = nn.Linear(cell, ob_space.shape[0])

    def init_hs(self, batch_size=1):
        zeros = next(self.parameters()).new_zeros(batch_size, self.cell_size)
        return zeros, zeros.clone()

    def forward(self, ob, ac, hs, h_masks):
        outs = []
        for x, mask in zip(torch.cat([ob, ac], dim=-1), h_masks):
            hs = self.cell(x, (hs[0] * (1 - mask), hs[1] * (1 - mask)))
            outs.append(hs[0])
        return self.out(torch.stack(outs)), hs


def test_mpc_with_a_recurrent_dynamics_model():
    from machina.pols import MPCPol

    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1", max_episode_steps=6)
    ob, ac = _spaces(env)

    def rew_func(next_obs, acs, mean_obs=0.0, std_obs=1.0, mean_acs=0.0, std_acs=1.0):
        return -(next_obs[:, 2] ** 2)

    net = ModelNetLSTM(ob, ac)
    pol = MPCPol(ob, ac, net, rew_func, 4, 3, rnn=True)
    assert pol.rnn
    epis = EpiSampler(env, pol, num_parallel=1, num_envs=2, seed=0).sample(pol, max_epis=3)
    assert len(epis) == 3 and all(ac.contains(a.astype(np.float32)) for a in epis[0]["acs"])
    # the state follows the actions taken; an episode start resets it
    obs = torch.zeros(1, 2, 3)
    torch.manual_seed(3)
    pol(obs, h_masks=torch.ones(1, 2))
    after_start = [h.clone() for h in pol.hs]
    pol(obs, h_masks=torch.zeros(1, 2))
    assert not torch.equal(after_start[0], pol.hs[0])
    torch.manual_seed(3)  # the same plans from a fresh state: the same state after
    pol(obs, h_masks=torch.ones(1, 2))
    torch.testing.assert_close(pol.hs[0], after_start[0], rtol=0, atol=0)
    dm = DeterministicSModel(ob, ac, net, rnn=True)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_h_masks(traj)
    traj.register_epis()
    result = mpc.train_dm(traj, dm, torch.optim.Adam(dm.parameters(), 1e-3), 1, 1)
    assert np.isfinite(result["DynModelLoss"]).all()


def test_noise_and_deterministic_policy_calls_of_the_original(pendulum_replay):
    env, pol, _ = pendulum_replay
    noise = OUActionNoise(env.action_space)
    assert noise("cpu").shape == (1,)  # 0.x's noise(device)
    obs = torch.zeros(2, 3)
    _, noiseless, _ = pol(obs, True)  # 0.x's pol(obs, no_noise)
    torch.testing.assert_close(noiseless, pol.deterministic_ac_real(obs)[1])
    torch.testing.assert_close(pol(obs, no_noise=True)[1], noiseless)


def test_svfunc_over_a_feature_space_takes_states_unchecked():
    """0.x's DIAYN example: the discriminator is declared on a 2-d feature space and fed
    4-d states that its net maps to features itself."""
    f_space = gym.spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)

    class FeatureNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(2, 3)

        def forward(self, ob):
            return self.out(ob[:, 0:2] + ob[:, 2:4])

    with pytest.warns(UserWarning, match="unchecked"):
        discrim = DeterministicSVfunc(f_space, FeatureNet())
    logits, _ = discrim(torch.ones(5, 4))
    assert logits.shape == (5, 3)
    with pytest.raises(ValueError, match="rnn=True needs"):  # not a failed call: still raised
        DeterministicSVfunc(f_space, FeatureNet(), rnn=True)


def test_attributes_that_0x_code_read():
    """0.x's samplers and scripts read these attributes; MixtureGaussianPol takes
    normalize_ac fourth, as 0.x's did; a mixture policy's outputs keep their shapes in
    0.x's one_epi."""
    from machina import nets
    from machina.nets.mixture import MixturePolNet
    from machina.pds import MixtureGaussianPd
    from machina.pds.gaussian_pd import GaussianPd
    from machina.pols import MixtureGaussianPol
    from machina.samplers import epi_sampler

    ob = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    box = gym.spaces.Box(-2.0, 2.0, (2,), dtype=np.float32)
    disc, multi = gym.spaces.Discrete(3), gym.spaces.MultiDiscrete([2, 4])
    for pol_cls, space, is_discrete, is_multi, a_i_shape in [
        (GaussianPol, box, False, False, (2,)),
        (CategoricalPol, disc, True, False, (3,)),
        (MultiCategoricalPol, multi, True, True, (2, 4)),
    ]:
        pol = pol_cls(ob, space, nets.PolNet(ob, space, 8, 8))
        assert (pol.discrete, pol.multi, pol.a_i_shape) == (is_discrete, is_multi, a_i_shape)
    assert Traj().traj_device() == torch.device("cpu")
    assert DeterministicSVfunc(ob, VNet(ob)).pd is not None
    assert DeterministicSAVfunc(ob, box, QNet(ob, box)).pd is not None
    assert isinstance(MixtureGaussianPd().gaussian_pd, GaussianPd)
    assert GymEnv("Pendulum-v1").monitoring is False

    class OwnDiscrete(GaussianPol):  # a subclass's read-only property is left alone
        @property
        def discrete(self):
            return "mine"

    assert OwnDiscrete(ob, box, nets.PolNet(ob, box, 8, 8)).discrete == "mine"
    mixture = MixtureGaussianPol(ob, box, MixturePolNet(ob, box, 3, 8, 8), False)
    assert mixture.normalize_ac is False and mixture.rnn is False
    env = gym.make("Pendulum-v1")
    space = env.action_space
    mixture = MixtureGaussianPol(env.observation_space, space, MixturePolNet(ob, space, 3, 8, 8))
    length, epi = epi_sampler.one_epi(env, mixture)
    assert epi["a_is"]["mean"].shape == (length, 3, 1) and epi["a_is"]["pi"].shape == (length, 3)
