"""SkillEnv: a skill per episode, seeded, in the observation and the info; composes."""

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest

from machina.envs import C2DEnv, GymEnv
from machina.envs.skill_env import SkillEnv
from machina.pols import RandomPol
from machina.samplers import EpiSampler

K = 4


def _skills(env, seed, n):
    first = env.reset(seed=seed)[1]["skill"]
    return [first] + [env.reset()[1]["skill"] for _ in range(n - 1)]


def test_observations_carry_the_skill_one_hot_through_the_episode():
    env = SkillEnv(GymEnv("Pendulum-v1"), num_skill=K)
    assert env.real_observation_space.shape == (3,)
    assert env.observation_space.shape == (3 + K,)
    assert env.skill_space.shape == (K,)
    np.testing.assert_array_equal(env.observation_space.low[3:], np.zeros(K))
    np.testing.assert_array_equal(env.observation_space.high[3:], np.ones(K))
    obs, info = env.reset(seed=3)
    skill = info["skill"]
    assert env.skill == skill and 0 <= skill < K
    for _ in range(5):
        assert obs.shape == (3 + K,) and obs.dtype == env.observation_space.dtype
        np.testing.assert_array_equal(obs[3:], np.eye(K)[skill])
        assert env.observation_space.contains(obs)
        obs, rew, term, trunc, info = env.step(env.action_space.sample())
        assert info["skill"] == skill
    # the state part is the inner environment's own observation
    inner = GymEnv("Pendulum-v1")
    inner_obs, _ = inner.reset(seed=3)
    np.testing.assert_allclose(env.reset(seed=3)[0][:3], inner_obs)


def test_seeded_resets_reproduce_the_skills_and_draw_all_of_them():
    env_a = SkillEnv(GymEnv("Pendulum-v1"), num_skill=K)
    env_b = SkillEnv(GymEnv("Pendulum-v1"), num_skill=K)
    skills_a, skills_b = _skills(env_a, 7, 200), _skills(env_b, 7, 200)
    assert skills_a == skills_b
    counts = np.bincount(skills_a, minlength=K)
    # uniform: 50 expected per skill; a draw that ignored some skill would fail
    assert counts.min() >= 30, counts
    assert _skills(env_a, 8, 200) != skills_a


def test_the_skill_can_be_fixed_by_options_or_attribute():
    env = SkillEnv(GymEnv("Pendulum-v1"), num_skill=K, fixed_skill=2)
    assert all(env.reset(seed=s)[1]["skill"] == 2 for s in range(5))
    env.fixed_skill = 1
    assert env.reset()[1]["skill"] == 1
    # options win over the attribute, for one episode; the rest go to the inner reset
    obs, info = env.reset(options={"skill": 3, "x_init": 0.0, "y_init": 0.0})
    assert info["skill"] == 3 and env.skill == 3
    np.testing.assert_allclose(obs, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], atol=1e-6)
    env.fixed_skill = None
    assert len(set(_skills(env, 0, 40))) == K


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="num_skill"):
        SkillEnv(GymEnv("Pendulum-v1"), num_skill=1)
    with pytest.raises(ValueError, match="fixed_skill"):
        SkillEnv(GymEnv("Pendulum-v1"), num_skill=K, fixed_skill=K)
    with pytest.raises(ValueError, match="env: expected an observation space Box"):
        SkillEnv(GymEnv("FrozenLake-v1"), num_skill=K)
    env = SkillEnv(GymEnv("Pendulum-v1"), num_skill=K)
    with pytest.raises(ValueError, match=r'options\["skill"\]'):
        env.reset(options={"skill": -1})


@pytest.mark.parametrize("order", ["skill_outside", "skill_inside"])
def test_composes_with_c2d_env_and_the_sampler_records_the_skill(order):
    if order == "skill_outside":
        env = SkillEnv(C2DEnv(GymEnv("Pendulum-v1", max_episode_steps=20), n_bins=5), K)
    else:
        env = C2DEnv(SkillEnv(GymEnv("Pendulum-v1", max_episode_steps=20), K), n_bins=5)
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    assert env.observation_space.shape == (3 + K,)
    # copies travel to sampler slots with cloudpickle
    copy = cloudpickle.loads(cloudpickle.dumps(env))
    assert copy.reset(seed=1)[1]["skill"] == env.reset(seed=1)[1]["skill"]

    pol = RandomPol(env.observation_space, env.action_space)
    sampler = EpiSampler(env, pol, num_envs=2, seed=0)
    epis = sampler.sample(pol, max_epis=12)
    sampler.close()
    skills = []
    for epi in epis:
        skill = int(epi["e_is"]["skill"][0])
        np.testing.assert_array_equal(epi["e_is"]["skill"], skill)
        np.testing.assert_array_equal(epi["obs"][:, 3:], np.tile(np.eye(K)[skill], (20, 1)))
        np.testing.assert_array_equal(epi["next_obs"][:, 3:], epi["obs"][:, 3:])
        skills.append(skill)
    assert len(set(skills)) > 1
