"""machina.samplers' engine (EpiSampler in one process or several): whole episodes, budgets,
seeding, draws from the stored distribution, recurrent policies, bad input and env errors."""

import time

import gymnasium as gym
import numpy as np
import pytest
import scipy.stats
import torch
from conftest import assert_within, float32_tolerances
from sampler_parts import (
    ToyEnv,
    cartpole,
    categorical_pol,
    gaussian_pol,
    lengths,
)

from machina.envs import C2DEnv, GymEnv
from machina.nets import PolNet, PolNetLSTM
from machina.pols import CategoricalPol, GaussianPol, MultiCategoricalPol, RandomPol
from machina.samplers import EpiSampler
from machina.samplers.engine import split_budget

EPI_KEYS = {"obs", "acs", "rews", "next_obs", "terms", "truncs", "dones", "a_is", "e_is"}


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


class _IntResetWalker(gym.Env):
    """A float64 space whose reset returns an int array (np.array([0, 0])), steps floats."""

    observation_space = gym.spaces.Box(-100.0, 100.0, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = np.array([0, 0]), 0
        return self.pos.copy(), {}

    def step(self, action):
        self.t += 1
        self.pos = self.pos + 0.3 * np.asarray(action, np.float64)
        return self.pos.copy(), 0.0, False, self.t >= 4, {}


@pytest.mark.parametrize("num_parallel", [1, 2])
def test_prepro_sees_float_steps_after_an_integer_reset(num_parallel):
    # the raw observations' field took the reset's int64: every later step was truncated
    pol = RandomPol(_IntResetWalker.observation_space, _IntResetWalker.action_space)
    with EpiSampler(
        _IntResetWalker, pol, seed=0, num_parallel=num_parallel, prepro=lambda o: o
    ) as sampler:
        epi = sampler.sample(pol, max_epis=1)[0]
    env = _IntResetWalker()
    env.reset(seed=0)
    steps = [env.step(pol.convert_ac_for_real(a))[0] for a in epi["acs"]]
    np.testing.assert_allclose(epi["next_obs"], steps, rtol=1e-6)
    assert np.abs(epi["obs"][1:]).max() > 0


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
    with pytest.raises(TypeError, match="fast_inference: expected a bool, given 'no'"):
        EpiSampler(env, pol, fast_inference="no")
    EpiSampler(env, pol, fast_inference=0).close()  # an argparse int
    with EpiSampler(env, pol) as sampler:
        with pytest.raises(TypeError, match="pol: expected a policy"):
            sampler.sample(None, max_epis=1)
    # a MultiDiscrete's start shifts its actions: a policy without it acts out of the space
    shifted = gym.spaces.MultiDiscrete([3, 2], start=[1, -1])
    toy = ToyEnv(length=3)
    toy.action_space = shifted
    unshifted = RandomPol(toy.observation_space, gym.spaces.MultiDiscrete([3, 2]))
    with pytest.raises(ValueError, match=r"pol\.action_space does not match.*start="):
        EpiSampler(toy, unshifted)


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
        if self.episode == 1 and self.fault == "array_reward" and self.t == 3:
            rew = np.array([rew])  # numpy's error named neither the reward nor the env
        return obs, rew, term, trunc, info


@pytest.mark.parametrize(
    "fault,pattern",
    [
        ("nan_reset", r"non-finite observation.*during reset"),
        ("inf_final", r"non-finite observation.*inf\) during step 4"),
        ("shape", r"observation.* of shape \(5,\) where \(2,\).*during step 2"),
        ("array_reward", r"returned the reward array\(\[.*\]\); expected a scalar .*step 3"),
    ],
)
@pytest.mark.parametrize("prepro", [None, lambda o: o + 1.0])
def test_bad_observation_errors_name_env_and_step(fault, pattern, prepro):
    env = OddObsEnv(fault)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_envs=2, seed=0, prepro=prepro) as sampler:
        with pytest.raises(RuntimeError, match=r"environment [01] \(seed [01]\) .*" + pattern):
            sampler.sample(pol, max_epis=4)


class NanAtTwo:
    """A prepro (batched when asked, as BasePrePro is) that returns NaN for the finite raw
    observations of step 2 (obs[0] == 2) or of the second episode's reset (obs == [0, 1])."""

    def __init__(self, batched):
        self.batched = batched

    def __call__(self, obs):
        obs = np.asarray(obs, dtype=np.float32)
        bad = (obs[..., :1] == 2) | ((obs[..., :1] == 0) & (obs[..., 1:] == 1))
        return np.where(bad, np.nan, obs)


@pytest.mark.parametrize("batched", [True, False])
def test_non_finite_prepro_output_blames_the_prepro(batched):
    env = ToyEnv(length=1)  # step 2 never comes: the second episode's reset is the fault
    pol = RandomPol(env.observation_space, env.action_space)
    pattern = (
        r"the prepro returned a non-finite observation .* from a finite raw observation, for "
        r"environment [01] \(seed [01]\) during {}; the prepro is at fault"
    )
    with EpiSampler(env, pol, num_envs=2, seed=0, prepro=NanAtTwo(batched)) as sampler:
        with pytest.raises(RuntimeError, match=pattern.format("reset")):
            sampler.sample(pol, max_epis=4)
    env = ToyEnv(length=4)
    with EpiSampler(env, pol, num_envs=2, seed=0, prepro=NanAtTwo(batched)) as sampler:
        with pytest.raises(RuntimeError, match=pattern.format("step 2")):
            sampler.sample(pol, max_epis=2)


class BadStepEnv(ToyEnv):
    """ToyEnv whose step 2 (or reset) returns something that is not what gymnasium says."""

    def __init__(self, fault):
        super().__init__(length=4)
        self.fault = fault

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        if self.fault == "none_obs":
            obs = np.array([0, None], dtype=object)
        return obs, info

    def step(self, action):
        obs, rew, term, trunc, info = super().step(action)
        if self.t == 2:
            if self.fault == "info_list":
                info = [1]
            elif self.fault == "info_array":
                info = np.array([1, 2])
            elif self.fault == "term_array":
                term = np.array([True, False])
            elif self.fault == "str_obs":
                obs = np.array(["a", "b"])
        return obs, rew, term, trunc, info


@pytest.mark.parametrize(
    "fault,prepro,pattern",
    [
        ("info_list", None, r"returned info \[1\] of type list; expected a dict during step 2"),
        ("info_array", None, r"returned info array\(\[1, 2\]\) of type ndarray; expected a dict"),
        ("info_list", np.negative, r"returned info \[1\] .*expected a dict during step 2"),
        ("term_array", None, r"returned terminated array\(\[ True, False\]\); expected a bool"),
        ("str_obs", None, r"returned an observation array\(\['a', 'b'\].*expected numbers"),
        ("str_obs", np.negative, r"returned an observation array\(\['a', 'b'\].*expected num"),
        ("none_obs", None, r"returned an observation array\(\[0, None\], dtype=object\) "),
    ],
)
def test_unreadable_step_results_name_the_environment(fault, prepro, pattern):
    env = BadStepEnv(fault)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_envs=2, seed=0, prepro=prepro) as sampler:
        with pytest.raises(RuntimeError, match=r"environment 0 \(seed 0\) " + pattern):
            sampler.sample(pol, max_epis=2)


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
