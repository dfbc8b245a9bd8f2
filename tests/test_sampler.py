"""Tests of machina.samplers.EpiSampler: whole episodes, budgets, seeding, errors, processes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import scipy.stats
import torch
from conftest import U, assert_within, categorical_draws_agree

from machina.envs import C2DEnv, GymEnv
from machina.nets import PolNet, PolNetLSTM
from machina.pols import CategoricalPol, GaussianPol, MultiCategoricalPol, RandomPol
from machina.samplers import EpiSampler
from machina.samplers._numpy_policy import NumpyPolicy
from machina.samplers.engine import split_budget

EPI_KEYS = {"obs", "acs", "rews", "next_obs", "terms", "truncs", "dones", "a_is", "e_is"}


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


def assert_whole_episode(epi, ob_shape):
    assert set(epi) == EPI_KEYS
    T = len(epi["rews"])
    assert T >= 1
    assert epi["obs"].shape == (T, *ob_shape) and epi["obs"].dtype == np.float32
    assert epi["next_obs"].shape == (T, *ob_shape) and epi["next_obs"].dtype == np.float32
    assert epi["rews"].dtype == np.float32
    for key in ("terms", "truncs", "dones"):
        assert epi[key].shape == (T,) and epi[key].dtype == bool
    np.testing.assert_array_equal(epi["dones"], epi["terms"] | epi["truncs"])
    assert epi["dones"][-1] and not epi["dones"][:-1].any()
    np.testing.assert_array_equal(epi["next_obs"][:-1], epi["obs"][1:])
    for value in list(epi["a_is"].values()) + list(epi["e_is"].values()):
        assert value.shape[0] == T


def lengths(epis):
    return [len(e["rews"]) for e in epis]


def assert_same_epis(a, b):
    assert len(a) == len(b)
    for ea, eb in zip(a, b):
        for key in ("obs", "acs", "rews", "next_obs", "terms", "truncs"):
            np.testing.assert_array_equal(ea[key], eb[key])
        assert ea["a_is"].keys() == eb["a_is"].keys()
        for key in ea["a_is"]:
            np.testing.assert_array_equal(ea["a_is"][key], eb["a_is"][key])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_episodes_whole_and_consistent(env_id):
    env = GymEnv(env_id, max_episode_steps=30)
    pol = categorical_pol(env) if env_id == "CartPole-v1" else gaussian_pol(env)
    with EpiSampler(env, pol, num_envs=3) as sampler:
        epis = sampler.sample(pol, max_epis=6)
    assert len(epis) == 6
    for epi in epis:
        assert_whole_episode(epi, env.observation_space.shape)
        if env_id == "CartPole-v1":
            assert epi["acs"].dtype == np.int64 and epi["acs"].shape == (len(epi["rews"]),)
            assert set(epi["a_is"]) == {"pi"}
        else:
            assert epi["acs"].shape == (len(epi["rews"]), 1)
            assert set(epi["a_is"]) == {"mean", "log_std"}
            # a time limit, never a true end, in Pendulum
            assert epi["truncs"][-1] and not epi["terms"].any() and len(epi["rews"]) == 30


def test_terminated_vs_truncated():
    env = cartpole(max_episode_steps=20)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_envs=4, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=40)
    n_truncs = n_terms = 0
    for epi in epis:
        T = len(epi["rews"])
        if epi["truncs"][-1]:
            # the pole may also fall on the last allowed step: then both flags are set
            assert T == 20
            n_truncs += 1
        else:
            assert epi["terms"][-1] and T < 20
            n_terms += 1
    assert n_truncs > 0 and n_terms > 0


def test_env_info_numeric_only():
    env = ToyEnv(length=4)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol) as sampler:
        (epi,) = sampler.sample(pol, max_epis=1)
    assert set(epi["e_is"]) == {"t", "vec"}
    np.testing.assert_array_equal(epi["e_is"]["t"], [1, 2, 3, 4])
    assert epi["e_is"]["vec"].shape == (4, 3)


@pytest.mark.parametrize("num_parallel,num_envs", [(1, 1), (1, 3), (2, 2)])
def test_max_epis_exact(num_parallel, num_envs):
    env = cartpole()
    pol = categorical_pol(env)
    with EpiSampler(env, pol, num_parallel=num_parallel, num_envs=num_envs) as sampler:
        for max_epis in (7, 1, 9):
            assert len(sampler.sample(pol, max_epis=max_epis)) == max_epis


def check_step_budget(epis, max_steps, num_parallel, num_envs):
    """Episodes come ordered by slot: each slot must have begun every one of its episodes
    while under its quota, and stopped only once at or over it."""
    quotas = split_budget(max_steps, num_parallel * num_envs)
    lens = lengths(epis)
    i = 0
    for quota in quotas:
        done = 0
        while done < quota:
            done += lens[i]  # begun with `done` < quota
            i += 1
    assert i == len(lens)
    assert sum(lens) >= max_steps


@pytest.mark.parametrize("num_parallel,num_envs", [(1, 1), (1, 4), (2, 2)])
def test_max_steps_met_without_new_episodes_after(num_parallel, num_envs):
    env = cartpole(max_episode_steps=50)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_parallel=num_parallel, num_envs=num_envs) as sampler:
        for max_steps in (300, 3, 101):
            epis = sampler.sample(pol, max_steps=max_steps)
            check_step_budget(epis, max_steps, num_parallel, num_envs)
            for epi in epis:
                assert_whole_episode(epi, (4,))


def test_max_steps_fixed_length_episodes():
    env = ToyEnv(length=5)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol) as sampler:
        # 11 steps: episodes begin at 0, 5, 10 and all finish, even the one begun at step 10.
        assert lengths(sampler.sample(pol, max_steps=11)) == [5, 5, 5]
        assert lengths(sampler.sample(pol, max_steps=10)) == [5, 5]
        # both budgets: whichever is met first
        assert lengths(sampler.sample(pol, max_steps=100, max_epis=2)) == [5, 5]


def test_split_budget_even():
    assert split_budget(6, 4) == [2, 2, 1, 1]
    assert split_budget(3, 3) == [1, 1, 1]
    assert split_budget(1, 4) == [1, 0, 0, 0]
    assert split_budget(None, 2) == [None, None]


@pytest.mark.parametrize("num_parallel,num_envs", [(1, 3), (2, 2)])
def test_seed_reproducible(num_parallel, num_envs):
    env = cartpole()
    pol = categorical_pol(env)

    def run(seed):
        with EpiSampler(env, pol, num_parallel=num_parallel, num_envs=num_envs, seed=seed) as s:
            return s.sample(pol, max_steps=150) + s.sample(pol, max_epis=5)

    first, second, other = run(3), run(3), run(4)
    assert_same_epis(first, second)
    assert not np.array_equal(first[0]["obs"][0], other[0]["obs"][0])


def test_seeded_first_reset_then_unseeded():
    env = cartpole()
    pol = categorical_pol(env)
    with EpiSampler(env, pol, num_envs=2, seed=10) as sampler:
        epis = sampler.sample(pol, max_epis=4)
    for slot in (0, 1):
        expected, _ = gym.make("CartPole-v1").reset(seed=10 + slot)
        np.testing.assert_array_equal(epis[2 * slot]["obs"][0], expected)
    assert not np.array_equal(epis[0]["obs"][0], epis[1]["obs"][0])


def test_user_torch_rng_untouched():
    env = cartpole()
    pol = categorical_pol(env)
    with EpiSampler(env, pol, num_envs=2) as sampler:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        sampler.sample(pol, max_steps=50)
        np.testing.assert_array_equal(torch.rand(3), expected)


def test_deterministic_takes_the_mode():
    env = GymEnv("Pendulum-v1", max_episode_steps=10)
    pol = gaussian_pol(env)
    with EpiSampler(env, pol, num_envs=2) as sampler:
        for epi in sampler.sample(pol, max_epis=2, deterministic=True):
            np.testing.assert_allclose(epi["acs"], epi["a_is"]["mean"], rtol=1e-6)
    env = cartpole()
    pol = categorical_pol(env)
    with EpiSampler(env, pol, num_envs=2) as sampler:
        for epi in sampler.sample(pol, max_epis=2, deterministic=True):
            np.testing.assert_array_equal(epi["acs"], epi["a_is"]["pi"].argmax(-1))


@pytest.mark.parametrize("fast_inference", [True, False])
def test_sampled_actions_are_draws_from_the_stored_pi(fast_inference):
    """End to end (engine, policy, categorical sampler): each action is a draw from the ``pi``
    stored with it, in the same row, with numpy inference (fast_inference) or the policy's.

    The policy is made confident so that ``pi`` varies widely across states; steps are binned
    by ``pi[1]`` and in each bin the count of action 1 is compared with the sum of ``pi[1]``
    (chi-square over the bins). Taking the mode, or the probabilities of another slot or step,
    would fail it.
    """
    env = cartpole(max_episode_steps=50)
    pol = categorical_pol(env)
    with torch.no_grad():
        torch.nn.init.normal_(pol.net.head.output_layer.weight, std=2.0)
    with EpiSampler(env, pol, num_envs=8, seed=0, fast_inference=fast_inference) as sampler:
        epis = sampler.sample(pol, max_steps=3000)
    acs = np.concatenate([epi["acs"] for epi in epis])
    p1 = np.concatenate([epi["a_is"]["pi"][:, 1] for epi in epis]).astype(np.float64)
    assert p1.max() - p1.min() > 0.5  # the test has power only if pi varies
    bins = np.minimum((p1 * 10).astype(int), 9)
    stat = 0.0
    for b in np.unique(bins):
        sel = bins == b
        var = np.sum(p1[sel] * (1.0 - p1[sel]))
        stat += (np.sum(acs[sel] == 1) - np.sum(p1[sel])) ** 2 / max(var, 1e-9)
    assert scipy.stats.chi2.sf(stat, len(np.unique(bins))) > 1e-3


@pytest.mark.parametrize("fast_inference", [True, False])
def test_gaussian_actions_are_draws_from_the_stored_mean_and_std(fast_inference):
    """Each Gaussian action is mean + std * N(0, 1) with the mean and log_std stored in its
    row: the standardised actions of every dimension pass a Kolmogorov-Smirnov test against
    N(0, 1) and are uncorrelated with the mean (the mode, or another row's mean, fails)."""
    env = GymEnv("Pendulum-v1", max_episode_steps=50)
    pol = gaussian_pol(env)
    with EpiSampler(env, pol, num_envs=8, seed=0, fast_inference=fast_inference) as sampler:
        epis = sampler.sample(pol, max_steps=2000)
    acs = np.concatenate([epi["acs"] for epi in epis]).astype(np.float64)
    mean = np.concatenate([epi["a_is"]["mean"] for epi in epis]).astype(np.float64)
    log_std = np.concatenate([epi["a_is"]["log_std"] for epi in epis]).astype(np.float64)
    z = (acs - mean) / np.exp(log_std)
    for d in range(z.shape[1]):
        assert scipy.stats.kstest(z[:, d], "norm").pvalue > 1e-3
        assert abs(np.corrcoef(z[:, d], mean[:, d])[0, 1]) < 0.1


def confident_pol(env):
    """A make_pol-like MLP policy with large random weights, so its outputs vary widely."""
    pol = gaussian_pol(env) if isinstance(env.action_space, gym.spaces.Box) else None
    pol = pol or categorical_pol(env)
    with torch.no_grad():
        for param in pol.net.parameters():
            torch.nn.init.normal_(param, std=0.5)
    return pol


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


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_numpy_policy_matches_the_torch_policy(env_id, batch):
    """NumpyPolicy (what fast_inference acts with) against the policy's own call on the same
    observations and torch RNG state: a_i within the float32 bound of two summation orders
    (``float32_tolerances``, not a constant from one CPU: 1.15e-6 > 1e-6 failed on an Intel
    Xeon, issue 11) with the same keys, shapes and dtypes, the same draws (actions equal,
    or within the bound for Gaussian), the same mode. 64 rows: torch fills 16 or more random
    values by another (vectorised) kernel."""
    env = gym.make(env_id)
    pol = confident_pol(env)
    fast = NumpyPolicy.build(pol, env.observation_space.shape)
    assert fast is not None
    obs = np.random.default_rng(0).normal(size=(batch, *env.observation_space.shape))
    obs = obs.astype(np.float32)
    tol = float32_tolerances(pol, obs)
    box = isinstance(env.action_space, gym.spaces.Box)
    for deterministic in (False, True):
        for seed in range(5):
            torch.manual_seed(seed)
            with torch.inference_mode():
                act = pol.deterministic_ac_real if deterministic else pol
                ref_real, ref_ac, ref_a_i = act(torch.from_numpy(obs))
            torch.manual_seed(seed)
            uniforms = torch.rand(batch).numpy()  # the categorical draws of both paths
            torch.manual_seed(seed)
            ac_real, ac, a_i = (fast.mode if deterministic else fast.sample)(obs)
            assert a_i.keys() == ref_a_i.keys()
            for key, value in a_i.items():
                ref = ref_a_i[key].detach().numpy()
                assert value.dtype == ref.dtype and value.shape == ref.shape
                if key == "log_std":
                    np.testing.assert_array_equal(value, ref)  # a copy of the parameter
                else:
                    assert_within(value, ref, tol[key], key)
            ref_ac = ref_ac.detach().numpy()
            assert ac.dtype == ref_ac.dtype and ac.shape == ref_ac.shape
            assert ac_real.dtype == ref_real.dtype and ac_real.shape == ref_real.shape
            if box:
                ac_tol = tol["mean"] if deterministic else tol["ac"]
                assert_within(ac, ref_ac, ac_tol, "ac")
                # ac_real = low + (ac + 1) (high - low) / 2, clipped: a few more ulps
                half_range = (env.action_space.high - env.action_space.low) / 2.0
                real_tol = ac_tol * half_range + 8 * U * np.abs(ref_real)
                assert_within(ac_real, ref_real, real_tol, "ac_real")
            else:
                pi_ref = ref_a_i["pi"].numpy()
                if deterministic:  # argmax: equal unless the top two are within the bound
                    top2 = np.sort(pi_ref, axis=1)[:, -2:]
                    near = top2[:, 1] - top2[:, 0] <= 2 * tol["pi"].max(axis=1)
                    assert np.all((ac == ref_ac) | near)
                else:
                    assert categorical_draws_agree(ac, ref_ac, tol["pi"], pi_ref, uniforms)
                np.testing.assert_array_equal(ac_real[ac == ref_ac], ref_real[ac == ref_ac])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_numpy_policy_writes_into_given_outputs(env_id):
    """With ``outs`` (rows of the engine's buffers) NumpyPolicy writes ac and every a_i entry
    into them and returns them: the same values as without, for sample and mode."""
    env = gym.make(env_id)
    pol = confident_pol(env)
    fast = NumpyPolicy.build(pol, env.observation_space.shape)
    obs = np.random.default_rng(1).normal(size=(5, *env.observation_space.shape))
    obs = obs.astype(np.float32)
    for act in (fast.sample, fast.mode):
        torch.manual_seed(0)
        ref_real, ref_ac, ref_a_i = act(obs)
        outs = {"ac": np.full_like(ref_ac, 7)}
        outs.update({key: np.full_like(value, 7) for key, value in ref_a_i.items()})
        torch.manual_seed(0)
        ac_real, ac, a_i = act(obs, outs)
        assert ac is outs["ac"] and all(a_i[key] is outs[key] for key in ref_a_i)
        np.testing.assert_array_equal(ac, ref_ac)
        np.testing.assert_array_equal(ac_real, ref_real)
        for key, value in ref_a_i.items():
            np.testing.assert_array_equal(a_i[key], value)


def test_numpy_policy_raises_the_torch_paths_error_on_nan_probabilities():
    """NaN weights give NaN probabilities: NumpyPolicy raises what the policy's own call
    raises, before drawing anything from the RNG."""
    env = cartpole()
    pol = categorical_pol(env)
    with torch.no_grad():
        pol.net.fc1.weight.fill_(float("nan"))
    fast = NumpyPolicy.build(pol, env.observation_space.shape)
    obs = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError) as ref, torch.inference_mode():
        pol(torch.from_numpy(obs))
    state = torch.get_rng_state()
    with pytest.raises(ValueError) as err:
        fast.sample(obs)
    assert str(err.value) == str(ref.value)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("start", [0, 2])
def test_numpy_policy_batch_size_changes_and_action_start(start):
    """One NumpyPolicy called with changing batch sizes (as in a sample's last steps, where
    slots stop one by one; it reuses its hidden buffers per batch size) gives the torch path's
    draws every time, for a Discrete space starting at 0 (ac_real is ac itself) or not."""
    ob_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    ac_space = gym.spaces.Discrete(3, start=start)
    torch.manual_seed(0)
    pol = CategoricalPol(ob_space, ac_space, PolNet(ob_space, ac_space))
    fast = NumpyPolicy.build(pol, ob_space.shape)
    assert fast is not None
    rng = np.random.default_rng(0)
    for i, batch in enumerate([7, 1, 7, 3, 3, 64]):
        obs = rng.normal(size=(batch, 4)).astype(np.float32)
        torch.manual_seed(i)
        with torch.inference_mode():
            ref_real, ref_ac, ref_a_i = pol(torch.from_numpy(obs))
        torch.manual_seed(i)
        ac_real, ac, a_i = fast.sample(obs)
        np.testing.assert_array_equal(ac, ref_ac.numpy())
        assert ac_real.dtype == ref_real.dtype
        np.testing.assert_array_equal(ac_real, ref_real)
        assert_within(a_i["pi"], ref_a_i["pi"].numpy(), float32_tolerances(pol, obs)["pi"], "pi")
        assert ac_real.min() >= start and ac_real.max() < start + 3


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_fast_inference_same_episodes_as_the_torch_policy(env_id):
    """Same seed with and without fast_inference: the same draws from the same RNG, so the
    same episodes up to float32 rounding, in two layouts. Discrete actions leave no rounding
    in the trajectory (CartPole's episodes are equal); Pendulum's dynamics amplify rounding
    over the steps, so each path's a_i is checked against the policy's own call on that
    path's observations, within the float32 bound, and the trajectories are compared where
    rounding has not entered them yet (the seeded first observations)."""
    env = GymEnv(env_id, max_episode_steps=20)
    pol = confident_pol(env)
    for num_parallel, num_envs in ((1, 3), (2, 2)):
        epis = {}
        for fast in (True, False):
            with EpiSampler(
                env,
                pol,
                num_parallel=num_parallel,
                num_envs=num_envs,
                seed=1,
                fast_inference=fast,
            ) as sampler:
                epis[fast] = sampler.sample(pol, max_steps=300)
                epis[fast] += sampler.sample(pol, max_epis=5, deterministic=True)
        assert lengths(epis[True]) == lengths(epis[False])
        for ea, eb in zip(epis[True], epis[False]):
            assert ea["acs"].dtype == eb["acs"].dtype
            np.testing.assert_array_equal(ea["obs"][0], eb["obs"][0])
            assert ea["a_is"].keys() == eb["a_is"].keys()
            for key in ea["a_is"]:
                assert ea["a_is"][key].dtype == eb["a_is"][key].dtype
            if env_id == "CartPole-v1":  # a tie within rounding never came up with this seed
                np.testing.assert_array_equal(ea["obs"], eb["obs"])
                np.testing.assert_array_equal(ea["acs"], eb["acs"])
        for epi in epis[True]:  # the fast path's outputs against the policy's own call
            tol = float32_tolerances(pol, epi["obs"])
            with torch.no_grad():
                ref = pol.pd_params(torch.from_numpy(epi["obs"]))
            key = "mean" if "mean" in ref else "pi"
            assert_within(epi["a_is"][key], ref[key].numpy(), tol[key], key)


def test_numpy_policy_only_for_what_it_reproduces():
    """Policies NumpyPolicy cannot vouch for keep the torch path: subclasses (they may
    override any step), nets of custom forward, recurrent ones, hooks, other observation shapes."""
    env = cartpole()
    ob_shape = env.observation_space.shape
    assert NumpyPolicy.build(categorical_pol(env), ob_shape) is not None
    assert NumpyPolicy.build(categorical_pol(env), (5,)) is None

    class MyPol(CategoricalPol):
        pass

    net = PolNet(env.observation_space, env.action_space)
    assert NumpyPolicy.build(MyPol(env.observation_space, env.action_space, net), ob_shape) is None

    # a user's nn.Sequential MLP takes the fast path (issue 12; tests/test_fast_path_nets.py),
    # a subclass of it (it may override forward) does not
    class MySequential(torch.nn.Sequential):
        pass

    user_net = MySequential(torch.nn.Linear(4, 2), torch.nn.Softmax(-1))
    user_pol = CategoricalPol(env.observation_space, env.action_space, user_net)
    assert NumpyPolicy.build(user_pol, ob_shape) is None
    hooked = categorical_pol(env)
    hooked.net.fc2.register_forward_hook(lambda module, args, out: out * 0.0)
    assert NumpyPolicy.build(hooked, ob_shape) is None
    pendulum = gym.make("Pendulum-v1")
    assert NumpyPolicy.build(gaussian_pol(pendulum, rnn=True), (3,)) is None
    assert NumpyPolicy.build(gaussian_pol(pendulum).double(), (3,)) is None
    assert NumpyPolicy.build(RandomPol(env.observation_space, env.action_space), ob_shape) is None
    # the hooked policy is really called by the sampler: with zero features, pi is constant
    with EpiSampler(env, hooked, seed=0) as sampler:
        epis = sampler.sample(hooked, max_steps=40)
    pi = np.concatenate([epi["a_is"]["pi"] for epi in epis])
    np.testing.assert_array_equal(pi, np.broadcast_to(pi[0], pi.shape))


def test_fast_inference_invalid_pi_raises_the_policy_error():
    env = cartpole()
    pol = categorical_pol(env)
    with torch.no_grad():
        pol.net.head.output_layer.bias.fill_(np.nan)
    with EpiSampler(env, pol, seed=0) as sampler:
        with pytest.raises(ValueError, match=r"pi: expected probabilities"):
            sampler.sample(pol, max_steps=10)


def test_deterministic_same_across_process_layouts():
    """Same total of slots, same seed: one process of 4 or two of 2 give the same episodes
    when acting deterministically (slot seeds and quotas depend only on the global slot).
    CartPole: the policy's batches differ (4 or 2 rows), which may round differently, but
    argmax actions only change at a tie within float32 rounding, so the trajectories are
    equal; the probabilities agree within the float32 bound."""
    env = GymEnv("CartPole-v1", max_episode_steps=30)
    pol = categorical_pol(env)
    results = []
    for num_parallel, num_envs in ((1, 4), (2, 2)):
        with EpiSampler(env, pol, num_parallel=num_parallel, num_envs=num_envs, seed=5) as s:
            results.append(s.sample(pol, max_epis=6, deterministic=True))
    a, b = results
    assert lengths(a) == lengths(b)
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea["obs"], eb["obs"])
        np.testing.assert_array_equal(ea["acs"], eb["acs"])
        tol = float32_tolerances(pol, ea["obs"])["pi"]
        assert_within(ea["a_is"]["pi"], eb["a_is"]["pi"], tol, "pi")


def test_lambda_factory_parallel():
    max_steps = 13

    def make():  # a closure: pickled by value, lives in no module
        return gym.make("CartPole-v1", max_episode_steps=max_steps)

    env = make()
    pol = categorical_pol(env)
    for factory in (make, lambda: gym.make("CartPole-v1", max_episode_steps=max_steps)):
        with EpiSampler(factory, pol, num_parallel=2, num_envs=2) as sampler:
            epis = sampler.sample(pol, max_epis=8)
        assert len(epis) == 8 and max(lengths(epis)) <= max_steps


def test_pendulum_parallel_and_c2d():
    env = GymEnv("Pendulum-v1", max_episode_steps=12)
    pol = gaussian_pol(env)
    with EpiSampler(env, pol, num_parallel=2) as sampler:
        epis = sampler.sample(pol, max_steps=30)
    check_step_budget(epis, 30, 2, 1)
    c2d = C2DEnv(GymEnv("Pendulum-v1", max_episode_steps=12), n_bins=7)
    torch.manual_seed(0)
    net = PolNet(c2d.observation_space, c2d.action_space)
    pol = MultiCategoricalPol(c2d.observation_space, c2d.action_space, net)
    with EpiSampler(c2d, pol, num_envs=2) as sampler:
        (epi,) = sampler.sample(pol, max_epis=1)
    assert epi["acs"].shape == (12, 1) and epi["acs"].dtype == np.int64
    assert epi["a_is"]["pi"].shape == (12, 1, 7)


class SpyRecurrentPol(GaussianPol):
    """Records the h_masks and batch shape of each call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []
        self.resets = 0

    def forward(self, obs, hs=None, h_masks=None):
        self.calls.append((tuple(obs.shape), np.asarray(h_masks).copy()))
        return super().forward(obs, hs, h_masks)

    def reset(self):
        self.resets += 1
        super().reset()


def test_recurrent_policy_masks():
    env = GymEnv("Pendulum-v1", max_episode_steps=4)
    torch.manual_seed(0)
    net = PolNetLSTM(env.observation_space, env.action_space)
    pol = SpyRecurrentPol(env.observation_space, env.action_space, net, rnn=True)
    with EpiSampler(env, pol, num_envs=2) as sampler:
        epis = sampler.sample(pol, max_epis=4)
        assert pol.resets == 1
        sampler.sample(pol, max_epis=2)
        assert pol.resets == 2
    assert len(epis) == 4
    for epi in epis:
        assert_whole_episode(epi, (3,))
        assert set(epi["a_is"]) == {"mean", "log_std"}
    shapes = {shape for shape, _ in pol.calls}
    assert shapes == {(1, 2, 3)}
    masks = np.stack([m for _, m in pol.calls[:8]])[:, 0]  # the first call's 8 steps
    # episodes of 4 steps in both slots: a new one starts every 4 steps
    np.testing.assert_array_equal(masks, [[1, 1], [0, 0], [0, 0], [0, 0]] * 2)


def test_prepro_applied_to_obs_and_next_obs():
    env = cartpole()
    pol = categorical_pol(env)
    with EpiSampler(env, pol, prepro=lambda o: 2.0 * o, seed=7) as sampler:
        (epi,) = sampler.sample(pol, max_epis=1)
    first, _ = gym.make("CartPole-v1").reset(seed=7)
    np.testing.assert_allclose(epi["obs"][0], 2.0 * first)
    np.testing.assert_array_equal(epi["next_obs"][:-1], epi["obs"][1:])


def test_env_instance_is_copied():
    env = ToyEnv(length=3)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_envs=2) as sampler:
        sampler.sample(pol, max_epis=4)
    assert env.episode == -1  # the user's instance was never reset


def test_bad_arguments():
    env = cartpole()
    pol = categorical_pol(env)
    pendulum = GymEnv("Pendulum-v1")
    with pytest.raises(ValueError, match=r"pol\.observation_space.*expected.*given"):
        EpiSampler(pendulum, pol)
    with EpiSampler(env, pol) as sampler:
        with pytest.raises(ValueError, match="max_epis or max_steps"):
            sampler.sample(pol)
        with pytest.raises(ValueError, match="max_steps"):
            sampler.sample(pol, max_steps=0)
        other = CategoricalPol(
            env.observation_space,
            gym.spaces.Discrete(3),
            PolNet(env.observation_space, gym.spaces.Discrete(3)),
        )
        with pytest.raises(ValueError, match=r"pol\.action_space.*Discrete\(2\).*Discrete\(3\)"):
            sampler.sample(other, max_epis=1)
    with pytest.raises(ValueError, match="num_envs"):
        EpiSampler(env, pol, num_envs=0)
    with pytest.raises(TypeError, match="env"):
        EpiSampler(3, pol)


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_raising_env_gives_clear_error(num_parallel):
    env = ToyEnv(length=8, fail_at_step=5, fail_episodes=1)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_parallel=num_parallel, num_envs=2, seed=100) as sampler:
        start = time.monotonic()
        # whichever slot's failure arrives first is reported
        pattern = r"environment [0-3] \(seed 10[0-3]\) raised ValueError: boom at step 5.*step 5"
        with pytest.raises(RuntimeError, match=pattern) as info:
            sampler.sample(pol, max_epis=4)
        assert time.monotonic() - start < 10
        assert isinstance(info.value.__cause__, ValueError)
        assert "boom at step 5" in str(info.value.__cause__)
        # usable afterwards: the envs fail in their first episode only
        epis = sampler.sample(pol, max_epis=4)
        assert lengths(epis) == [8] * 4


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_nan_observation_gives_clear_error(num_parallel):
    env = ToyEnv(length=8, nan_at_step=3, fail_episodes=1)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_parallel=num_parallel, seed=0) as sampler:
        pattern = r"environment [01] \(seed [01]\) returned a non-finite observation.*step 3"
        with pytest.raises(RuntimeError, match=pattern):
            sampler.sample(pol, max_epis=2)


class OddObsEnv(ToyEnv):
    """ToyEnv whose observation goes wrong in its second episode: NaN at the reset, inf at
    the final step, or a different shape at step 2."""

    def __init__(self, fault):
        super().__init__(length=4)
        self.fault = fault

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        if self.fault == "nan_reset" and self.episode == 1:
            obs[1] = np.nan
        return obs, info

    def step(self, action):
        obs, rew, term, trunc, info = super().step(action)
        if self.episode == 1 and self.fault == "inf_final" and term:
            obs[0] = np.inf
        if self.episode == 1 and self.fault == "shape" and self.t == 2:
            obs = np.zeros(5, dtype=np.float32)
        return obs, rew, term, trunc, info


@pytest.mark.parametrize(
    "fault,pattern",
    [
        ("nan_reset", r"non-finite observation.*during reset"),
        ("inf_final", r"non-finite observation.*inf\) during step 4"),
        ("shape", r"observation.* of shape \(5,\) where \(2,\).*during step 2"),
    ],
)
@pytest.mark.parametrize("prepro", [None, lambda o: o + 1.0])
def test_bad_observation_errors_name_env_and_step(fault, pattern, prepro):
    env = OddObsEnv(fault)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_envs=2, seed=0, prepro=prepro) as sampler:
        with pytest.raises(RuntimeError, match=r"environment [01] \(seed [01]\) .*" + pattern):
            sampler.sample(pol, max_epis=4)


def test_list_observations_and_long_episodes():
    """Observations as lists are converted; episodes longer than the engine's first buffer
    (64 steps) and slots that stop early keep every step."""

    class ListObsEnv(ToyEnv):
        def reset(self, *, seed=None, options=None):
            obs, info = super().reset(seed=seed, options=options)
            return obs.tolist(), info

        def step(self, action):
            obs, *rest = super().step(action)
            return (obs.tolist(), *rest)

    env = ListObsEnv(length=150)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_envs=3) as sampler:
        epis = sampler.sample(pol, max_epis=4)
    assert lengths(epis) == [150] * 4
    for epi in epis:
        assert_whole_episode(epi, (2,))
        np.testing.assert_array_equal(epi["obs"][:, 0], np.arange(150))
        np.testing.assert_array_equal(epi["next_obs"][-1], [150, epi["obs"][0, 1]])


def test_recurrent_idle_slot_repeats_its_final_observation():
    env = ToyEnv(length=3)
    torch.manual_seed(0)
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    net = PolNetLSTM(env.observation_space, space)

    class Recorder(GaussianPol):
        def forward(self, obs, hs=None, h_masks=None):
            seen.append(np.asarray(obs)[0].copy())
            return super().forward(obs, hs, h_masks)

    seen = []
    pol = Recorder(env.observation_space, space, net, rnn=True)
    sampler = EpiSampler(
        lambda: gym.wrappers.TransformAction(
            ToyEnv(length=3), lambda a: int(a[0] > 0), gym.spaces.Box(-1, 1, (1,))
        ),
        pol,
        num_envs=2,
    )
    with sampler:
        epis = sampler.sample(pol, max_epis=3)  # slot 0: two episodes, slot 1: one
    assert lengths(epis) == [3, 3, 3]
    assert len(seen) == 6
    # steps 4-6: slot 1 is idle and shows its final observation (t=3, episode 0)
    for obs in seen[3:]:
        np.testing.assert_array_equal(obs[1], [3, 0])


class SlowEnv(ToyEnv):
    def step(self, action):
        time.sleep(0.002)
        return super().step(action)


def test_killed_worker_gives_error_and_is_replaced():
    env = SlowEnv(length=10)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_parallel=2, seed=0) as sampler:
        victim = sampler._pool.workers[1].proc
        threading.Timer(0.5, os.kill, (victim.pid, signal.SIGKILL)).start()
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"worker 1 .*seeds \[1\].*SIGKILL"):
            sampler.sample(pol, max_steps=10**7)
        assert time.monotonic() - start < 15
        # a new worker replaces the dead one; the surviving worker is interrupted
        assert len(sampler.sample(pol, max_epis=4)) == 4
        assert sampler._pool.workers[1].proc.pid != victim.pid


def test_close_leaves_no_processes():
    env = cartpole()
    pol = categorical_pol(env)
    sampler = EpiSampler(env, pol, num_parallel=2)
    sampler.sample(pol, max_epis=2)
    procs = [w.proc for w in sampler._pool.workers]
    sampler.close()
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        sampler.sample(pol, max_epis=1)


def test_workers_exit_when_parent_dies(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, gymnasium as gym
        from machina.pols import RandomPol
        from machina.samplers import EpiSampler
        env = gym.make("CartPole-v1")
        pol = RandomPol(env.observation_space, env.action_space)
        sampler = EpiSampler(env, pol, num_parallel=2)
        print(" ".join(str(w.proc.pid) for w in sampler._pool.workers), flush=True)
        os._exit(0)  # dies without closing anything
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(p) for p in out.stdout.split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_pid_alive(p) for p in pids)


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
