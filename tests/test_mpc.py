"""Dynamics model, its training and random-shooting MPC: it beats random actions on Pendulum."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import mean_return
from torch import nn
from torch.testing import assert_close

from machina.algos import mpc
from machina.loss_functional.model import dynamics
from machina.models import DeterministicSModel
from machina.nets.model import ModelNet
from machina.pols import RandomPol
from machina.pols.mpc_pol import MPCPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef


def pendulum_rew(next_obs, acs):
    theta = torch.atan2(next_obs[:, 1], next_obs[:, 0])
    return -(theta**2 + 0.1 * next_obs[:, 2].clamp(-8, 8) ** 2 + 0.001 * acs[:, 0] ** 2)


def random_traj(env, n_epi, seed=0):
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, seed=seed, num_envs=4) as sampler:
        epis = sampler.sample(pol, max_epis=n_epi)
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    return traj, mean_return(epis)


def test_model_normalises_inputs_and_delta():
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    dm = DeterministicSModel(ob, ac, ModelNet(ob, ac, 16, 16))
    traj, _ = random_traj(env, 2)
    stats = dm.update_stats(traj)
    obs, acs, next_obs = (traj.data_map[k] for k in ("obs", "acs", "next_obs"))
    assert_close(stats["mean_obs"], obs.mean(0))
    assert_close(stats["std_d_obs"], (next_obs - obs).std(0))
    # forward = denormalised net output on standardised inputs
    d_obs, info = dm(obs[:5], acs[:5])
    raw = dm.net((obs[:5] - obs.mean(0)) / obs.std(0), (acs[:5] - acs.mean(0)) / acs.std(0))
    d_change = next_obs - obs
    assert_close(d_obs, raw * d_change.std(0) + d_change.mean(0))
    assert_close(dm.predict_next_obs(obs[:5], acs[:5]), obs[:5] + d_obs)
    assert_close(dm._predict(obs[:5], acs[:5]), obs[:5] + d_obs)
    # the loss is half the standardised squared error (machina 0.x's scale)
    batch = dict(obs=obs[:5], acs=acs[:5], next_obs=next_obs[:5])
    expected = 0.5 * ((raw - (d_change[:5] - d_change.mean(0)) / d_change.std(0)) ** 2).mean()
    assert_close(dynamics(dm, batch), expected)
    # the statistics are saved with the model
    assert set(stats) <= set(dm.state_dict())


def test_bad_inputs_are_named():
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space

    class TwoOutputs(nn.Module):
        def forward(self, obs, acs):
            return obs[..., :2]

    with pytest.raises(ValueError, match="net: DeterministicSModel needs a net returning"):
        DeterministicSModel(ob, ac, TwoOutputs())
    with pytest.raises(ValueError, match="net: DeterministicSModel could not call Linear"):
        DeterministicSModel(ob, ac, nn.Linear(4, 3))
    dm = DeterministicSModel(ob, ac, ModelNet(ob, ac, 8, 8))
    with pytest.raises(ValueError, match="acs: DeterministicSModel expects shape"):
        dm(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="rew_func: expected one reward per row"):
        MPCPol(ob, ac, dm, lambda next_obs, acs: next_obs, 10, 2)
    with pytest.raises(ValueError, match="n_samples"):
        MPCPol(ob, ac, dm, pendulum_rew, 0, 2)
    with pytest.raises(TypeError, match="target: expected a key of traj"):
        mpc.train_dm(Traj(), dm, None, target=None)


def test_non_finite_data_leaves_the_model_statistics_unchanged():
    """One NaN in next_obs: train_dm raises naming the column before any statistic (or
    weight) is written; the model still predicts what it predicted before."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    dm = DeterministicSModel(ob, ac, ModelNet(ob, ac, 8, 8))
    optim = torch.optim.Adam(dm.parameters(), 1e-3)
    traj, _ = random_traj(env, 2)
    mpc.train_dm(traj, dm, optim, epoch=1, batch_size=32)
    before = {k: v.clone() for k, v in dm.state_dict().items()}
    bad = {k: v.clone() for k, v in traj.data_map.items()}
    bad["next_obs"][7, 0] = float("nan")
    bad_traj = Traj()
    bad_traj.add_epis([{k: v.numpy() for k, v in bad.items()}])
    bad_traj.register_epis()
    for data in (bad_traj, bad):
        with pytest.raises(ValueError, match="'next_obs' gives non-finite statistics"):
            mpc.train_dm(data, dm, optim, epoch=1, batch_size=32) if data is bad_traj else (
                dm.update_stats(data)
            )
        for key, value in dm.state_dict().items():
            assert torch.equal(value, before[key]), key


def test_original_style_bare_net_with_statistics():
    """``MPCPol(..., net, rew_func, n, h, mean_obs, std_obs, mean_acs, std_acs)`` as in the
    original: the bare net predicts the change of the standardised observation."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    net = ModelNet(ob, ac, 8, 8)
    mean_obs, std_obs = np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6, 2.0])
    pol = MPCPol(ob, ac, net, pendulum_rew, 10, 3, mean_obs, std_obs, 0.0, 1.5)
    obs, acs = torch.randn(4, 3), torch.randn(4, 1)
    obs_n = (obs - torch.tensor(mean_obs).float()) / torch.tensor(std_obs).float()
    expected = (obs_n + net(obs_n, acs / 1.5)) * torch.tensor(std_obs).float()
    expected = expected + torch.tensor(mean_obs).float()
    assert_close(pol.net._predict(obs, acs), expected)
    ac_real, ac, a_i = pol(obs)
    assert ac_real.shape == (4, 1) and a_i == {}
    assert np.all(np.abs(ac_real) <= 2.0)


def test_plan_picks_the_best_sequence_of_a_known_model():
    """With an exact model of a point mass, MPC steers toward the rewarded position."""

    class PointMass(nn.Module):  # obs (x, v, z): x += v, v += a; z unused
        def forward(self, obs, acs):
            return torch.stack([obs[:, 1], acs[:, 0], torch.zeros_like(acs[:, 0])], dim=-1)

    ob = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    ac = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    dm = DeterministicSModel(ob, ac, PointMass())
    pol = MPCPol(ob, ac, dm, lambda next_obs, acs: -next_obs[:, 0].abs(), 300, 4)
    torch.manual_seed(0)
    obs = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]).repeat(10, 1)
    ac_real, _, _ = pol(obs)
    # far from x = 0: push toward it, hard
    assert (ac_real[0::2, 0] < -0.5).all() and (ac_real[1::2, 0] > 0.5).all(), ac_real


def test_a_model_without_any_finite_plan_is_an_error_not_a_random_action():
    """NaN plans never win; when no plan of an observation is finite (a diverged model),
    planning used to return plan 0, a uniformly random action, silently."""

    class Diverging(nn.Module):  # NaN once the velocity is pushed left: half the plans
        half = True

        def forward(self, obs, acs):
            d = torch.stack([obs[:, 1], acs[:, 0], torch.zeros_like(acs[:, 0])], dim=-1)
            return torch.where(acs[:, :1] < 0, float("nan"), d) if self.half else d * np.nan

    ob = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    ac = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    net = Diverging()
    pol = MPCPol(ob, ac, DeterministicSModel(ob, ac, net), lambda o, a: -o[:, 0].abs(), 64, 3)
    net.half = True
    torch.manual_seed(0)
    ac_real, _, _ = pol(torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]))
    assert (ac_real >= 0).all()  # the finite plans (pushing right) won
    net.half = False
    with pytest.raises(RuntimeError, match="every plan is non-finite .* for 2 of 2 observations"):
        pol(torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]))

    class RecurrentDiverging(nn.Module):  # the same through a recurrent model's path
        def init_hs(self, batch_size):
            return torch.zeros(batch_size, 1)

        def forward(self, obs, acs, hs, h_masks):
            return net(obs.reshape(-1, 3), acs.reshape(-1, 1)).reshape(obs.shape), hs

    model = DeterministicSModel(ob, ac, RecurrentDiverging(), rnn=True)
    pol = MPCPol(ob, ac, model, lambda o, a: -o[:, 0].abs(), 64, 3, rnn=True)
    net.half = True
    torch.manual_seed(0)  # the plans it diverges on are dropped (it raised, blaming obs)
    ac_real, _, _ = pol(torch.tensor([[[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]]))
    assert (ac_real >= 0).all()


class GRUModelNet(nn.Module):
    """A user's recurrent dynamics net: ``(obs, acs, hs, h_masks) -> (d_obs, hs)``."""

    def __init__(self, ob_dim=3, ac_dim=1, hidden=16):
        super().__init__()
        self.hidden = hidden
        self.cell = nn.GRUCell(ob_dim + ac_dim, hidden)
        self.out = nn.Linear(hidden, ob_dim)

    def init_hs(self, batch_size):
        return torch.zeros(batch_size, self.hidden)

    def forward(self, obs, acs, hs, h_masks):
        outs = []
        for t in range(obs.shape[0]):
            hs = self.cell(torch.cat([obs[t], acs[t]], -1), hs * (1 - h_masks[t]))
            outs.append(self.out(hs))
        return torch.stack(outs), hs


def test_recurrent_model_trains_on_sequences():
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    env_traj = Traj()
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, seed=0, num_envs=4) as sampler:
        env_traj.add_epis(sampler.sample(pol, max_epis=4))  # 4 sequences of 200 steps
    env_traj = ef.compute_h_masks(env_traj)
    env_traj.register_epis()
    dm = DeterministicSModel(env.observation_space, env.action_space, GRUModelNet(), rnn=True)
    optim = torch.optim.Adam(dm.parameters(), 1e-2)
    losses = mpc.train_dm(env_traj, dm, optim, 15, 4, log_enable=False)["DynModelLoss"]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    # MPCPol plans with it too (machina 0.x's recurrent MPC, issue 14), carrying its state
    pol = MPCPol(env.observation_space, env.action_space, dm, pendulum_rew, 8, 3)
    ac_real, _, _ = pol(np.zeros((1, 4, 3), np.float32), h_masks=np.ones((1, 4), np.float32))
    assert pol.rnn and ac_real.shape == (1, 4, 1) and np.all(np.abs(ac_real) <= 2.0)


def test_mpc_beats_random_actions_on_pendulum():
    """20 random episodes train the model; MPC then gains >= 400 over random actions."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    traj, random_return = random_traj(env, 20)
    dm = DeterministicSModel(ob, ac, ModelNet(ob, ac, 64, 64))
    optim = torch.optim.Adam(dm.parameters(), 1e-3)
    result = mpc.train(traj, dm, optim, epoch=1000, batch_size=256, log_enable=False)
    losses = result["DynModelLoss"]
    assert np.mean(losses[-50:]) < 0.01 * np.mean(losses[:10])
    pol = MPCPol(ob, ac, dm, pendulum_rew, n_samples=200, horizon=10)
    with EpiSampler(env, pol, seed=1, num_envs=8) as sampler:
        mpc_return = mean_return(sampler.sample(pol, max_epis=8))
    assert mpc_return >= random_return + 400, (mpc_return, random_return)
