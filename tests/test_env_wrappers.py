"""AcInObEnv and RewInObEnv: what they append, their spaces, composition with C2DEnv."""

import warnings

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from machina.envs import C2DEnv, GymEnv
from machina.envs.ac_in_ob_env import AcInObEnv
from machina.envs.rew_in_ob_env import RewInObEnv
from machina.pols import RandomPol
from machina.samplers import EpiSampler


def test_ac_in_ob_appends_normalised_previous_action():
    inner = GymEnv("Pendulum-v1")  # action Box [-2, 2]
    env = AcInObEnv(inner, initial_value=0.5)
    assert env.observation_space.shape == (4,) and env.horizon == 200
    np.testing.assert_array_equal(env.observation_space.low[3:], [-1])
    obs, _ = env.reset(seed=0)
    ref, _ = gym.make("Pendulum-v1").reset(seed=0)
    np.testing.assert_array_equal(obs, np.append(ref, 0.5).astype(np.float32))
    for action, expected in [(2.0, 1.0), (-1.0, -0.5), (5.0, 1.0)]:
        obs, *_ = env.step(np.array([action], np.float32))
        assert obs[3] == pytest.approx(expected) and obs in env.observation_space
    raw = AcInObEnv(GymEnv("Pendulum-v1"), normalize=False)
    raw.reset(seed=0)
    assert raw.step(np.array([-1.5], np.float32))[0][3] == pytest.approx(-1.5)


class FixedDimEnv(gym.Env):
    """A Box action whose second dimension is fixed (low == high)."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(np.array([0, 1], np.float32), np.array([1, 1], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_ac_in_ob_maps_a_fixed_action_dimension_to_0():
    """low == high normalised: 0, not 0 / 0 (a NaN observation outside the space)."""
    env = AcInObEnv(FixedDimEnv())
    env.reset(seed=0)
    obs = env.step(np.array([0.75, 1.0], np.float32))[0]
    np.testing.assert_array_equal(obs[2:], [0.5, 0.0])
    assert obs in env.observation_space


def test_rew_in_ob_appends_standardised_previous_reward():
    env = RewInObEnv(GymEnv("Pendulum-v1"), mean=-4.0, std=2.0, initial_value=0.25)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4,) and obs[3] == 0.25
    obs, rew, *_ = env.step(np.array([0.3], np.float32))
    assert obs[3] == pytest.approx((rew + 4.0) / 2.0)
    with pytest.raises(ValueError, match="std"):
        RewInObEnv(GymEnv("Pendulum-v1"), std=0)


def test_wrappers_compose_with_c2d_both_ways_and_pass_check_env():
    # C2DEnv outside: the previous *real* action is appended (the original README's order).
    outer = C2DEnv(RewInObEnv(AcInObEnv(GymEnv("Pendulum-v1"))), n_bins=5)
    assert outer.observation_space.shape == (5,)
    outer.reset(seed=0)
    obs, rew, *_ = outer.step(np.array([4]))  # top bin: real action 2.0, normalised 1.0
    assert obs[3] == pytest.approx(1.0) and obs[4] == pytest.approx(rew)
    # C2DEnv inside: the bins are appended one-hot.
    inner = AcInObEnv(C2DEnv(GymEnv("Pendulum-v1"), n_bins=5))
    assert inner.observation_space.shape == (8,)
    inner.reset(seed=0)
    obs, *_ = inner.step(np.array([2]))
    np.testing.assert_array_equal(obs[3:], [0, 0, 1, 0, 0])
    discrete = AcInObEnv(GymEnv("CartPole-v1"))
    discrete.reset(seed=0)
    np.testing.assert_array_equal(discrete.step(1)[0][4:], [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env notes that these are wrappers
        for make in (
            lambda: RewInObEnv(AcInObEnv(gym.make("Pendulum-v1"))),
            lambda: RewInObEnv(AcInObEnv(gym.make("CartPole-v1"))),
        ):
            check_env(make(), skip_render_check=True)


def test_wrapped_env_samples_in_workers_with_same_seed_same_episodes():
    env = C2DEnv(RewInObEnv(AcInObEnv(GymEnv("Pendulum-v1", max_episode_steps=20))), n_bins=3)
    copy = cloudpickle.loads(cloudpickle.dumps(env))
    np.testing.assert_array_equal(copy.reset(seed=4)[0], env.reset(seed=4)[0])
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_parallel=2, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=2)
    for epi in epis:
        # Each observation carries the action and reward of the step before it.
        real = np.linspace(-2, 2, 3)[epi["acs"][:, 0]]
        np.testing.assert_allclose(epi["next_obs"][:, 3], real / 2.0, atol=1e-6)
        np.testing.assert_allclose(epi["next_obs"][:, 4], epi["rews"], rtol=1e-6)
        np.testing.assert_array_equal(epi["obs"][1:], epi["next_obs"][:-1])
        assert epi["obs"][0, 3] == 0 and epi["obs"][0, 4] == 0


def test_wrapper_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="dim"):
        AcInObEnv(GymEnv("Pendulum-v1"), dim=1)
    with pytest.raises(ValueError, match="env: expected an observation space Box"):
        AcInObEnv(GymEnv("Blackjack-v1"))


class _MultiDiscreteEnv(gym.Env):
    """A 1-D Box observation and a MultiDiscrete action space that starts at 1."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 2], start=[1, 1])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert action in self.action_space
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_ac_in_ob_one_hot_counts_from_the_spaces_start():
    env = AcInObEnv(_MultiDiscreteEnv())
    env.reset(seed=0)
    # The lowest action of each dimension is the first bin, the highest the last.
    np.testing.assert_array_equal(env.step(np.array([1, 1]))[0][2:], [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(env.step(np.array([3, 2]))[0][2:], [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(env.step(np.array([2, 1]))[0][2:], [0, 1, 0, 1, 0])
    for bad in (np.array([0, 1]), np.array([4, 1]), np.array([1, 3]), np.array([1])):
        with pytest.raises(ValueError, match="action: expected an element of MultiDiscrete"):
            env.encode_action(bad)
    discrete = AcInObEnv(GymEnv(gym.make("CartPole-v1")))
    discrete.env.action_space = gym.spaces.Discrete(2, start=-1)
    assert discrete.encode_action(-1).tolist() == [1, 0]
    with pytest.raises(ValueError, match="action: expected an element of Discrete"):
        discrete.encode_action(1)


def test_rew_in_ob_keeps_the_appended_reward_within_its_bounds():
    # Pendulum's rewards are in [-16.3, 0]: standardised with std 1 they leave [-2, 2].
    env = RewInObEnv(GymEnv("Pendulum-v1"), low=-2.0, high=0.5, mean=-1.0)
    env.reset(seed=0)
    appended = []
    for _ in range(30):
        obs, rew, *_ = env.step(np.array([2.0], np.float32))
        assert obs in env.observation_space
        appended.append((obs[3], rew))
    assert any(rew + 1.0 < -2.0 for _, rew in appended)  # clipping was exercised
    for value, rew in appended:
        assert value == pytest.approx(min(max(rew + 1.0, -2.0), 0.5))


def test_ac_in_ob_checks_the_action_before_the_environment_steps():
    """A whole-number float bin index, which C2DEnv takes, is taken; a fractional one is
    refused before the inner environment moves (it stepped, then raised)."""
    env = AcInObEnv(C2DEnv(GymEnv("Pendulum-v1"), 5))
    env.reset(seed=0)
    obs, *_ = env.step(np.array([4.0]))
    np.testing.assert_array_equal(obs[-5:], [0, 0, 0, 0, 1])
    state = env.original_env.unwrapped.state.copy()
    with pytest.raises(ValueError, match="action: expected an element of"):
        env.step(np.array([2.5]))
    np.testing.assert_array_equal(env.original_env.unwrapped.state, state)


def test_c2d_bins_of_an_integer_box_round_to_the_nearest():
    class IntBoxEnv(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Box(-3, 4, (1,), np.int64)

    env = C2DEnv(IntBoxEnv(), n_bins=15)  # -3, -2.5, ..., 4: halves to the even neighbour
    np.testing.assert_array_equal(env.bins[0], np.rint(np.linspace(-3, 4, 15)).astype(np.int64))
    assert env.bins[0][1] == -2 and env.bins[0][3] == -2 and env.bins[0][11] == 2
    assert sorted(set(env.bins[0])) == list(range(-3, 5))
