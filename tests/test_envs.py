"""Tests of machina.envs: GymEnv (wrapping, pickling, videos) and C2DEnv (bins to actions)."""

import pickle
import warnings

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
from conftest import run_example

from machina.envs import C2DEnv, GymEnv


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, *_ = env.step(action)
        out.append(obs)
    return np.stack(out)


def test_gym_env_from_id_wraps_and_forwards():
    env = GymEnv("CartPole-v1", max_episode_steps=7)
    assert env.observation_space == gym.make("CartPole-v1").observation_space
    assert env.action_space == gym.spaces.Discrete(2)
    assert env.horizon == 7 and env.env_id == "CartPole-v1"
    obs, info = env.reset(seed=0)
    expected, _ = gym.make("CartPole-v1").reset(seed=0)
    np.testing.assert_array_equal(obs, expected)
    truncated = False
    for _ in range(7):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated:
            break
    assert terminated or truncated
    env.close()


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_gym_env_pickles_as_id_and_kwargs(dumps):
    env = GymEnv("Pendulum-v1", max_episode_steps=9)
    env.reset(seed=1)
    env.step(np.array([0.5], dtype=np.float32))
    blob = dumps(env)
    assert len(blob) < 1000  # id + kwargs, not the simulator state
    copy = pickle.loads(blob)
    assert isinstance(copy, GymEnv) and copy.env is not env.env
    assert copy.horizon == 9 and copy.make_kwargs == {"max_episode_steps": 9}
    actions = [np.array([a], dtype=np.float32) for a in (1.0, -1.0, 0.3)]
    np.testing.assert_array_equal(rollout(copy, 3, actions), rollout(env, 3, actions))


def test_gym_env_from_instance_pickles_the_instance():
    inner = gym.make("CartPole-v1", max_episode_steps=11)
    env = GymEnv(inner)
    # env.env is the SeedableEnv around the instance (0.x scripts call env.env.seed(s))
    assert env.env.env is inner and env.original_env is env.env and env.env_id is None
    copy = pickle.loads(pickle.dumps(env))
    assert copy.env.env is not inner and copy.horizon == 11
    np.testing.assert_array_equal(rollout(copy, 0, [1, 0, 1]), rollout(env, 0, [1, 0, 1]))


def test_gym_env_bad_arguments():
    with pytest.raises(ValueError, match="make_kwargs"):
        GymEnv(gym.make("CartPole-v1"), max_episode_steps=3)
    with pytest.raises(TypeError, match="env"):
        GymEnv(42)
    with pytest.raises(ValueError, match="log_dir"):
        GymEnv("CartPole-v1", record_video=True)


class FrameEnv(gym.Env):
    """Renders a tiny RGB frame, so that videos need neither pygame nor a simulator."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode="rgb_array"):
        self.render_mode = render_mode
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 0.0, self.t >= 5, False, {}

    def render(self):
        return np.full((16, 16, 3), 20 * self.t, dtype=np.uint8)


def test_gym_env_records_video(tmp_path):
    pytest.importorskip("moviepy")
    env = GymEnv(FrameEnv(), log_dir=str(tmp_path / "videos"), record_video=True)
    assert isinstance(env.env, gym.wrappers.RecordVideo)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(0)
        done = terminated or truncated
    env.close()
    assert list((tmp_path / "videos").glob("*.mp4"))
    # a copy keeps recording into the same folder, without gymnasium's overwrite warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(pickle.loads(pickle.dumps(env)).env, gym.wrappers.RecordVideo)


def test_gym_env_records_a_classic_control_video(tmp_path):
    """machina 0.x's take_movie.py records Pendulum: gymnasium draws it with pygame (the
    video and dev extras install it)."""
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    env = GymEnv("Pendulum-v1", log_dir=str(tmp_path), record_video=True)
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0  # a drawn pendulum
    for _ in range(3):
        env.step(env.action_space.sample())
    env.close()
    assert list(tmp_path.glob("*.mp4"))


def test_c2d_env_maps_bins_to_evenly_spaced_actions():
    env = C2DEnv(GymEnv("Pendulum-v1"), n_bins=5)
    assert env.action_space == gym.spaces.MultiDiscrete([5])
    assert env.observation_space == env.env.observation_space
    np.testing.assert_allclose(env.bins, [[-2.0, -1.0, 0.0, 1.0, 2.0]])
    for k, real in enumerate([-2.0, -1.0, 0.0, 1.0, 2.0]):
        np.testing.assert_allclose(env.action(np.array([k])), [real])
    with pytest.raises(ValueError, match="action"):
        env.action(np.array([5]))
    # whole floats are indices; others were truncated silently (2.7 -> bin 2)
    np.testing.assert_allclose(env.action(np.array([3.0])), [1.0])
    for bad in ([2.7], [0.9], [np.nan]):
        with pytest.raises(ValueError, match="action: expected integer bin indices"):
            env.action(np.array(bad))
    with pytest.raises(ValueError, match="action: expected 1 bin indices, given 0"):
        env.action(np.zeros(0, np.int64))


def test_c2d_env_several_dimensions_and_steps():
    box = gym.spaces.Box(np.array([0.0, -1.0]), np.array([1.0, 3.0]), dtype=np.float64)

    class BoxEnv(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = box

        def reset(self, *, seed=None, options=None):
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.last = action
            return np.zeros(1, np.float32), 0.0, False, False, {}

    env = C2DEnv(BoxEnv(), n_bins=3)
    assert env.action_space == gym.spaces.MultiDiscrete([3, 3])
    env.reset()
    env.step(np.array([2, 1]))
    np.testing.assert_allclose(env.unwrapped.last, [1.0, 1.0])
    assert env.unwrapped.last.dtype == np.float64
    # steps a real environment, and survives pickling
    pend = pickle.loads(pickle.dumps(C2DEnv(GymEnv("Pendulum-v1"), n_bins=4)))
    pend.reset(seed=0)
    obs, rew, *_ = pend.step(np.array([3]))
    assert obs.shape == (3,) and np.isfinite(rew)


def test_c2d_env_bad_arguments():
    with pytest.raises(ValueError, match="env"):
        C2DEnv(GymEnv("CartPole-v1"))
    with pytest.raises(ValueError, match="n_bins"):
        C2DEnv(GymEnv("Pendulum-v1"), n_bins=1)


def test_gym_env_seed_seeds_the_next_reset():
    # machina 0.x's scripts seed through env.env.seed(s); GymEnv itself has no seed()
    # (gymnasium's checker warns about one, issue 11).
    env = GymEnv("CartPole-v1")
    assert not hasattr(env, "seed")
    env.env.seed(3)
    first = env.reset()[0]
    assert not np.array_equal(env.reset()[0], first)
    env.env.seed(3)
    np.testing.assert_array_equal(env.reset()[0], first)


@pytest.mark.parametrize("wrap", ["gym_env", "c2d_env"])
def test_wrappers_pass_gymnasiums_env_checker(wrap):
    from gymnasium.utils.env_checker import check_env

    env = GymEnv("Pendulum-v1") if wrap == "gym_env" else C2DEnv(gym.make("Pendulum-v1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice on Box bounds and old seed()
        check_env(env, skip_render_check=True)
    assert env.spec is not None and env.spec.id == "Pendulum-v1"


def test_take_movie_reads_the_environment_of_the_run(tmp_path):
    # it defaulted to HopperBulletEnv-v0 whatever the run: a CartPole run's policy failed to load
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    run_example(
        "run_ppo.py",
        *("--env_name", "CartPole-v1", "--log", tmp_path, "--max_steps", 64),
        *("--steps_per_iter", 64, "--eval_epis", 1),
    )
    out = tmp_path / "cartpole.mp4"
    result = run_example("take_movie.py", "--log", tmp_path, "--out", out, "--max_steps", 20)
    assert out.is_file() and "frames" in result.stdout
