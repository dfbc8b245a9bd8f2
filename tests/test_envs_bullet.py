"""PyBullet tasks under gymnasium 1.x: registration, API, seeding, samplers, PPO, examples."""

import importlib.util
import warnings

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import mean_return, run_example, run_python
from gymnasium.utils.env_checker import check_env

from machina.algos import ppo_clip
from machina.envs import GymEnv
from machina.envs.bullet import BULLET_ENVS, register_bullet_envs
from machina.pols import RandomPol, make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

register_bullet_envs()


def test_import_is_lazy_and_leaves_no_fake_gym():
    """Importing machina registers the ids without pybullet; making one imports pybullet
    and leaves no stand-in gym module, no shadowing sys.path entry behind."""
    run_python(
        """
        import sys
        import gymnasium
        import machina, machina.envs, machina.samplers
        from machina.envs.bullet import register_bullet_envs
        register_bullet_envs()
        assert "HopperBulletEnv-v0" in gymnasium.registry
        assert "pybullet" not in sys.modules and "pybullet_envs" not in sys.modules
        path = list(sys.path)
        env = gymnasium.make("HopperBulletEnv-v0")
        env.reset(seed=0)
        assert "pybullet_envs.gym_locomotion_envs" in sys.modules
        leaked = [m for m in sys.modules if m == "gym" or m.startswith("gym.")]
        assert not leaked, leaked
        pkg = sys.modules.get("pkg_resources")
        assert pkg is None or getattr(pkg, "__file__", None), "stand-in pkg_resources left"
        assert sys.path == path
        try:
            import gym
        except ImportError:
            print("no gym")
        else:
            assert hasattr(gym, "__file__"), "import gym found the stand-in"
            print("real gym")
        """
    )


@pytest.mark.parametrize("env_id", list(BULLET_ENVS))
def test_bullet_env_passes_gymnasium_check_env(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        # Bullet observation spaces are unbounded; check_env warns about that, rightly.
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(env.unwrapped)
    assert env.spec.max_episode_steps == BULLET_ENVS[env_id][1]
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space and info == {}
    obs, rew, term, trunc, info = env.step(env.action_space.sample())
    assert obs.dtype == np.float32 and isinstance(rew, float) and trunc is False
    frame = env.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # a rendered scene, not a blank image
    env.close()


def rollout(env_id, seed, n_steps=100):
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = [obs]
    for _ in range(n_steps):
        obs, rew, term, trunc, _ = env.step(env.action_space.sample())
        rows += [obs, np.array([rew, term, trunc], np.float32)]
        if term or trunc:
            obs, _ = env.reset()  # later resets continue the seeded stream
            rows.append(obs)
    env.close()
    return np.concatenate(rows)


@pytest.mark.parametrize("env_id", list(BULLET_ENVS))
def test_same_seed_same_first_100_steps(env_id):
    first = rollout(env_id, seed=3)
    np.testing.assert_array_equal(first, rollout(env_id, seed=3))
    other = rollout(env_id, seed=4)
    assert first.shape != other.shape or not np.array_equal(first, other)


def _episode(env, seed, n=30):
    obs, _ = env.reset(seed=seed)
    rows, actions = [obs], np.random.default_rng(0)
    for _ in range(n):
        obs, rew, term, trunc, _ = env.step(actions.uniform(-1, 1, env.action_space.shape))
        rows.append(np.append(obs, rew))
        if term or trunc:
            break
    return rows


@pytest.mark.parametrize("env_id", ["HopperBulletEnv-v0", "AntBulletEnv-v0"])
def test_a_seeded_reset_repeats_its_episode_whatever_came_before_and_after_close(env_id):
    """A walker restores the state it saved at its first reset from the second on: a fresh
    environment's first episode differed (Ant's first observation already). And a reset
    after close failed ("Not connected to physics server")."""
    fresh = _episode(gym.make(env_id), 5)
    env = gym.make(env_id)
    _episode(env, 1)
    for again in (_episode(env, 5), (env.close(), _episode(env, 5))[1]):
        assert len(again) == len(fresh)
        for a, b in zip(fresh, again):
            np.testing.assert_array_equal(a, b)
    env.close()


@pytest.mark.parametrize("env_id", ["HalfCheetahBulletEnv-v0", "ReacherBulletEnv-v0"])
def test_bound_client_steps_as_pybullets_own(env_id, monkeypatch):
    import pybullet
    from pybullet_utils.bullet_client import BulletClient

    from machina.envs import bullet

    bound = rollout(env_id, seed=5, n_steps=300)
    monkeypatch.setattr(bullet, "_bind_client", lambda env: None)  # pybullet_utils' client
    np.testing.assert_array_equal(bound, rollout(env_id, seed=5, n_steps=300))
    monkeypatch.undo()
    env = gym.make(env_id)
    env.reset(seed=0)
    client = env.unwrapped._env._p
    assert isinstance(client, BulletClient) and type(client) is not BulletClient
    env.step(env.action_space.sample())
    assert client.getNumBodies() > 0 and "getNumBodies" in vars(client)  # kept once bound
    env.close()
    # The closed client's id may now serve another simulation: a call must fail, as it
    # does with pybullet_utils' client, not reach that one.
    other = gym.make(env_id)
    other.reset(seed=0)
    with pytest.raises(pybullet.error, match="[Nn]ot connected"):
        client.getNumBodies()
    other.close()


WALKERS = [
    "HalfCheetahBulletEnv-v0",
    "HopperBulletEnv-v0",
    "Walker2DBulletEnv-v0",
    "AntBulletEnv-v0",
    "HumanoidBulletEnv-v0",
    "HumanoidFlagrunBulletEnv-v0",
]


def short_flag_timeout(env):
    """The flag-run robot moves its flag every 150 steps; random actions fell it sooner."""
    robot = env.unwrapped._env.robot
    if hasattr(robot, "flag_timeout"):
        robot.flag_timeout = 3


def walker_rollout(env_id, fast_step, n_steps):
    """Observations and float64 rewards of ``n_steps`` actions drawn 30% past the bounds (so
    the clipping counts), with resets, and the env's own bookkeeping at the end."""
    env = gym.make(env_id, fast_step=fast_step)
    actions = np.random.default_rng(7).uniform(-1.3, 1.3, (n_steps, *env.action_space.shape))
    obs, _ = env.reset(seed=11)
    short_flag_timeout(env)
    observations, results = [obs], []
    for action in actions.astype(np.float32):
        obs, rew, term, trunc, _ = env.step(action)
        observations.append(obs)
        results.append((rew, term, trunc))
        if term or trunc:
            observations.append(env.reset()[0])
            short_flag_timeout(env)
    inner = env.unwrapped._env
    kept = (list(inner.rewards), inner.reward, list(inner.robot.feet_contact), inner.potential)
    stepper = type(env.unwrapped._walker).__name__
    env.close()
    return np.stack(observations), results, kept, stepper


@pytest.mark.parametrize("env_id", WALKERS)
def test_walker_fast_step_is_pybullet_envs_step_to_the_bit(env_id):
    """Batched pybullet queries, pybullet_envs' arithmetic: every observation, reward, end
    and the env's reward terms equal pybullet_envs' own step exactly, across resets."""
    n_steps = 1200 if env_id == "HopperBulletEnv-v0" else 400  # Hopper: many falls
    fast = walker_rollout(env_id, True, n_steps)
    plain = walker_rollout(env_id, False, n_steps)
    assert (fast[3], plain[3]) == ("WalkerStep", "NoneType")
    np.testing.assert_array_equal(fast[0], plain[0])
    assert fast[1] == plain[1] and fast[2] == plain[2]
    if env_id == "HopperBulletEnv-v0":
        assert sum(term for _, term, _ in fast[1]) >= 10  # resets were exercised


def test_fast_step_only_where_the_walker_step_is_pybullet_envs_own():
    for env_id, expected in [
        ("ReacherBulletEnv-v0", "NoneType"),
        ("InvertedPendulumBulletEnv-v0", "NoneType"),
        ("HopperBulletEnv-v0", "WalkerStep"),
    ]:
        env = gym.make(env_id)
        env.reset(seed=0)
        assert type(env.unwrapped._walker).__name__ == expected, env_id
        env.step(env.action_space.sample())
        env.close()
    env = gym.make("HopperBulletEnv-v0")  # a robot whose calc_state is someone else's
    robot = env.unwrapped._env.robot
    robot.calc_state = lambda: type(robot).calc_state(robot) * 0
    env.reset(seed=0)
    assert env.unwrapped._walker is None
    assert not env.step(env.action_space.sample())[0].any()
    env.close()
    env = gym.make("HopperBulletEnv-v0", fast_step=False)
    copy = cloudpickle.loads(cloudpickle.dumps(env.unwrapped))
    assert copy.fast_step is False
    copy.reset(seed=0)
    assert copy._walker is None
    copy.close()
    with pytest.raises(TypeError, match="fast_step: expected a bool, given 'yes'"):
        gym.make("HopperBulletEnv-v0", fast_step="yes")


def test_fall_is_terminated_time_limit_is_truncated():
    env = gym.make("HopperBulletEnv-v0")
    env.reset(seed=0)
    n_steps, term, trunc = 0, False, False
    while not (term or trunc):
        _, _, term, trunc, _ = env.step(np.ones(3, np.float32))
        n_steps += 1
    assert term and not trunc and n_steps < 1000  # full torque: the hopper falls over
    env = gym.make("HopperBulletEnv-v0", max_episode_steps=5)
    env.reset(seed=0)
    results = [env.step(np.zeros(3, np.float32))[2:4] for _ in range(5)]
    assert results[-1] == (False, True) and all(r == (False, False) for r in results[:-1])


def test_bad_actions_and_a_step_before_reset_are_named():
    # pybullet_envs failed far from the cause: an IndexError, a broadcast error, a bare assert
    env = gym.make("HopperBulletEnv-v0")
    with pytest.raises(RuntimeError, match="step: .*HopperBulletEnv has no episode; call reset"):
        env.unwrapped.step(np.zeros(3, np.float32))
    env.reset(seed=0)
    for bad in (np.zeros(2), np.zeros(5), np.full(3, np.nan)):
        with pytest.raises(ValueError, match=r"action: expected finite values of shape \(3,\)"):
            env.step(bad)
    env.step([0.0, 0.0, 0.0])  # any array-like of the right shape
    env.close()


def test_gym_env_and_two_worker_sampler_make_bullet_ids():
    env = GymEnv("HopperBulletEnv-v0")
    assert env.horizon == 1000
    copy = cloudpickle.loads(cloudpickle.dumps(env))
    np.testing.assert_array_equal(copy.reset(seed=1)[0], env.reset(seed=1)[0])
    # A gymnasium.make instance travels too: it pickles as its constructor arguments.
    made = gym.make("Walker2DBulletEnv-v0")
    made_copy = cloudpickle.loads(cloudpickle.dumps(made))
    np.testing.assert_array_equal(made_copy.reset(seed=2)[0], made.reset(seed=2)[0])
    # Workers re-make the id: registration happens there when the GymEnv is unpickled.
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, num_parallel=2, seed=5) as sampler:
        epis = sampler.sample(pol, max_epis=4)
    assert len(epis) == 4
    assert all(epi["terms"][-1] or epi["truncs"][-1] for epi in epis)
    assert not np.array_equal(epis[0]["obs"][0], epis[2]["obs"][0])  # seeds 5 and 6
    # A factory calling gymnasium.make: the workers never import machina.envs, the
    # sampler registers this process's ids there first.
    factory = lambda: gym.make("HopperBulletEnv-v0", max_episode_steps=20)  # noqa: E731
    with EpiSampler(factory, pol, num_parallel=2, seed=5) as sampler:
        made_epis = sampler.sample(pol, max_epis=2)
    assert [len(e["rews"]) <= 20 for e in made_epis] == [True, True]
    np.testing.assert_array_equal(made_epis[0]["obs"][0], epis[0]["obs"][0])  # seed 5 both


def _bullet_samplers(layout: str, seed: int) -> tuple[EpiSampler, RandomPol, int]:
    """A Hopper sampler in ``layout`` (one process, two workers or a 2-env vector env), its
    random policy and the episodes per sample call."""
    if layout == "vector env":
        vec = gym.make_vec("HopperBulletEnv-v0", 2, vectorization_mode="sync")
        pol = RandomPol(vec.single_observation_space, vec.single_action_space)
        return EpiSampler(vec, pol, seed=seed), pol, 4
    env = GymEnv("HopperBulletEnv-v0", max_episode_steps=20)
    pol = RandomPol(env.observation_space, env.action_space)
    num_parallel = 2 if layout == "workers" else 1
    return EpiSampler(env, pol, num_parallel=num_parallel, seed=seed), pol, 3


@pytest.mark.parametrize("layout", ["one process", "workers", "vector env"])
def test_restored_sampler_continues_the_same_bullet_episodes(layout):
    """The simulator's own RandomState is reseeded from the env's np_random at every reset,
    and a restored sampler replays the seeded first reset of its fresh environments (the
    walkers add the ground's parts to the robot at their first reset, which moves every later
    episode's first reward), so it continues with the same episodes, rewards included: a
    resumed PyBullet run is exact, not only a gymnasium one."""
    first, pol, epis = _bullet_samplers(layout, seed=3)
    second, _, _ = _bullet_samplers(layout, seed=9)
    with first, second:
        first.sample(pol, max_epis=2)
        second.load_state_dict(first.state_dict())
        torch.manual_seed(0)
        expected = first.sample(pol, max_epis=epis)
        torch.manual_seed(0)
        got = second.sample(pol, max_epis=epis)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a["obs"], b["obs"])
        np.testing.assert_array_equal(a["acs"], b["acs"])
        np.testing.assert_array_equal(a["rews"], b["rews"])


def test_ppo_improves_hopper():
    """PPO on HopperBulletEnv-v0, 20k steps: the deterministic return must reach 1.4x the
    untrained policy's (measured: 48.5 untrained, 90.8 trained)."""
    torch.manual_seed(0)
    env = GymEnv("HopperBulletEnv-v0")
    pol = make_pol(env.observation_space, env.action_space, h_size=64)
    vf = make_vf(env.observation_space, h_size=64)
    optim_pol = torch.optim.Adam(pol.parameters(), 3e-4)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    with EpiSampler(env, pol, seed=0, num_envs=4) as sampler:
        untrained = mean_return(sampler.sample(pol, max_epis=8, deterministic=True))
        step = 0
        while step < 20_000:
            traj = Traj()
            traj.add_epis(sampler.sample(pol, max_steps=2048))
            traj = ef.compute_vs(traj, vf)
            traj = ef.compute_rets(traj, 0.99)
            traj = ef.compute_advs(traj, 0.99, 0.95)
            traj = ef.centerize_advs(traj)
            traj = ef.compute_h_masks(traj)
            traj.register_epis()
            ppo_clip.train(
                traj=traj,
                pol=pol,
                vf=vf,
                optim_pol=optim_pol,
                optim_vf=optim_vf,
                epoch=10,
                batch_size=256,
                clip_param=0.2,
                max_grad_norm=0.5,
                log_enable=False,
            )
            step += traj.num_step
        trained = mean_return(sampler.sample(pol, max_epis=8, deterministic=True))
    assert trained >= 1.4 * untrained, (untrained, trained)


def read_progress(log):
    import csv

    with open(log / "progress.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("rnn", ["--no-rnn", "--rnn"])
def test_run_mixed_env_runs_an_iteration(tmp_path, rnn):
    run_example(
        "run_mixed_env.py",
        "--log",
        tmp_path,
        rnn,
        "--max_steps",
        64,
        "--steps_per_iter",
        32,
        "--num_envs",
        1,
        "--epoch_per_iter",
        1,
    )
    rows = read_progress(tmp_path)
    assert len(rows) >= 1
    for key in ("ReturnAverage_HumanoidBulletEnv-v0", "ReturnAverage_HumanoidFlagrunBulletEnv-v0"):
        assert np.isfinite(float(rows[0][key]))
    assert np.isfinite(float(rows[0]["PolLossAverage"]))
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0


@pytest.mark.skipif(importlib.util.find_spec("moviepy") is None, reason="moviepy not installed")
def test_take_movie_writes_a_video_of_a_saved_policy(tmp_path):
    run_example(
        "run_ppo.py",
        "--env_name",
        "HopperBulletEnv-v0",
        "--log",
        tmp_path,
        "--max_steps",
        64,
        "--steps_per_iter",
        64,
        "--num_envs",
        2,
        "--eval_epis",
        1,
    )
    out = tmp_path / "hopper.mp4"
    result = run_example(
        "take_movie.py",
        *("--env_name", "HopperBulletEnv-v0", "--log", tmp_path, "--out", out, "--max_steps", 30),
    )
    n_frames = int(result.stdout.split(": ")[1].split(" frames")[0])
    from moviepy import VideoFileClip

    with VideoFileClip(str(out)) as clip:
        assert tuple(clip.size) == (320, 240)
        frames = list(clip.iter_frames())
    # Container timing may drop or repeat a frame or two at the ends.
    assert abs(len(frames) - n_frames) <= 3 and n_frames >= 10
    assert np.std(frames[0]) > 0


def test_make_expert_epis_rebuilds_a_pybullet_entry_policy_and_keeps_raw_observations(tmp_path):
    """The Hopper entry trains a gSDE policy on normalised observations: make_expert_epis.py
    --log rebuilds it from the run's args.json (its parameters, as saved, do not fit the flags'
    default policy) and saves the environment's raw observations, the final ones included
    (an untrained walker falls into states its prepro clips): replayed, the environment
    returns exactly the saved next_obs."""
    run_example(
        "run_ppo.py",
        *("--env_name", "HopperBulletEnv-v0", "--log", tmp_path, "--max_steps", 64),
        *("--steps_per_iter", 64, "--num_envs", 2, "--eval_epis", 1),
    )
    epis_path = tmp_path / "epis.npz"
    result = run_example(
        "make_expert_epis.py", "--log", tmp_path, "--num_epis", 4, "--epis_path", epis_path
    )
    assert "sde_sample_freq=4" in result.stdout and "normalize_ob=True" in result.stdout
    traj = Traj.load(str(epis_path))
    obs, next_obs, acs = (traj.data_map[k].numpy() for k in ("obs", "next_obs", "acs"))
    assert traj.num_epi == 4 and not {"raw_obs", "raw_next_obs"} & set(traj.data_map)
    env = GymEnv("HopperBulletEnv-v0")
    to_env = make_pol(env.observation_space, env.action_space).convert_ac_for_real
    bounds = traj.epis_index
    for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        # episode i starts from the environment's reset with seed i (the sampler's seed 0)
        np.testing.assert_array_equal(obs[start], env.reset(seed=i)[0])
        np.testing.assert_array_equal(next_obs[start : end - 1], obs[start + 1 : end])
        for t in range(start, end):
            np.testing.assert_array_equal(env.step(to_env(acs[t]))[0], next_obs[t])
    env.close()
