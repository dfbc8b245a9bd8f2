"""machina 0.x's sampling functions and Ray workers, and its Traj call orders, as 0.x's
tests/examples call them (on gymnasium's reset/step API)."""

import copy
import multiprocessing
import os
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.envs import GymEnv
from machina.nets import PolNet
from machina.pols import CategoricalPol, GaussianPol, make_pol
from machina.samplers import epi_sampler, raysampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.traj import traj as traj_module


def gaussian_pol(env):
    torch.manual_seed(0)
    return GaussianPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )


def test_large_numbers_as_in_0x():
    assert epi_sampler.LARGE_NUMBER == 100000000
    assert raysampler.LARGE_NUMBER == 100000000
    assert traj_module.LARGE_NUMBER == 1000000000000


@pytest.mark.parametrize("deterministic", [False, True])
def test_one_epi_pendulum(deterministic):
    env = GymEnv("Pendulum-v1")
    env.reset(seed=0)
    pol = gaussian_pol(env)
    length, epi = epi_sampler.one_epi(env, pol, deterministic)
    assert length == 200  # Pendulum's time limit: a truncated end
    assert set(epi) == {"obs", "acs", "rews", "dones", "terms", "truncs", "a_is", "e_is"}
    assert epi["obs"].shape == (200, 3) and epi["acs"].shape == (200, 1)
    for key in ("obs", "acs", "rews", "dones", "terms", "truncs"):
        assert epi[key].dtype == np.float32
        assert len(epi[key]) == length
    assert epi["dones"][-1] == 1 and epi["truncs"][-1] == 1 and epi["terms"].sum() == 0
    assert epi["dones"][:-1].sum() == 0
    assert set(epi["a_is"]) == {"mean", "log_std"}
    assert epi["a_is"]["mean"].shape == (200, 1)
    if deterministic:  # acts with the mean
        np.testing.assert_allclose(epi["acs"], epi["a_is"]["mean"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_one_epi_recurrent_agent_infos_are_per_step(env_id):
    """A recurrent policy's outputs (time and batch axes of 1) stored as a feed-forward
    policy's: (T, k)."""
    env = GymEnv(env_id)
    env.reset(seed=0)
    shapes = []
    for rnn in (False, True):
        pol = make_pol(env.observation_space, env.action_space, rnn=rnn)
        length, epi = epi_sampler.one_epi(env, pol)
        shapes.append({k: v.shape[1:] for k, v in epi["a_is"].items()})
        assert all(len(v) == length for v in epi["a_is"].values())
    assert shapes[0] == shapes[1]


def test_one_epi_cartpole_prepro_and_terminated_end():
    env = gym.make("CartPole-v1")
    env.reset(seed=1)
    torch.manual_seed(0)
    pol = CategoricalPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    seen = []

    def prepro(o):
        seen.append(o)
        return o * 2

    length, epi = epi_sampler.one_epi(env, pol, prepro=prepro)
    env.close()
    assert len(seen) == length and epi["acs"].shape == (length,)
    np.testing.assert_array_equal(epi["obs"], np.array(seen, dtype=np.float32) * 2)
    assert epi["dones"][-1] == 1 and epi["terms"][-1] + epi["truncs"][-1] >= 1
    assert set(epi["a_is"]) == {"pi"}


def test_mp_sample_fills_the_shared_list():
    """0.x's worker loop over shared counters, in a real (spawned) process."""
    ctx = multiprocessing.get_context("spawn")
    env = GymEnv("Pendulum-v1")
    pol = gaussian_pol(env)
    pol.share_memory()

    def shared(v, dtype=torch.long):
        return torch.tensor(v, dtype=dtype).share_memory_()

    max_steps, max_epis = shared(10**8), shared(2)
    n_steps, n_epis = shared(0), shared(0)
    exec_flag, det_flag = shared(0), shared(1, torch.uint8)
    manager = ctx.Manager()
    proc = None
    try:
        epis = manager.list()
        args = (pol, env, max_steps, max_epis, n_steps, n_epis, epis, exec_flag, det_flag, 0)
        proc = ctx.Process(target=epi_sampler.mp_sample, args=args, daemon=True)
        proc.start()
        exec_flag += 1
        for _ in range(1200):  # 120 s at most
            if int(exec_flag) == 0:
                break
            proc.join(0.1)
            assert proc.is_alive(), f"mp_sample exited with {proc.exitcode}"
        else:
            pytest.fail("mp_sample did not finish 2 episodes in 120 s")
        got = list(epis)
        assert int(n_epis) == 2 and int(n_steps) == 400
        assert len(got) == 2 and all(len(e["rews"]) == 200 for e in got)
        # deterministic flag: the same start would give the same actions; here only check
        # the actions are the policy's means (deterministic_ac_real)
        np.testing.assert_allclose(got[0]["acs"], got[0]["a_is"]["mean"], rtol=1e-6, atol=1e-7)
    finally:
        if proc is not None:
            proc.terminate()
            proc.join(30)
        manager.shutdown()


class CountingWorker(raysampler.BaseSampleWorker):
    """A user's worker (0.x style): episodes of 3 steps whose rews carry the worker id."""

    def one_epi(self, deterministic=False):
        o, _ = self.env.reset()
        obs = np.array([self.prepro(o)] * 3, dtype=np.float32)
        return 3, dict(
            obs=obs,
            rews=np.full(3, self.worker_id, dtype=np.float32),
            dones=np.array([0, 0, 1], dtype=np.float32),
            det=np.float32(deterministic),
        )


class FlagPrepro:
    """An identity prepro carrying a file path to the workers (their one shared value)."""

    def __init__(self, path):
        self.path = path

    def __call__(self, ob):
        return ob


class HangOnceWorker(CountingWorker):
    """The first episode any worker starts never ends (its flag file, made atomically,
    tells later ones, a replacement included, that it is taken)."""

    def one_epi(self, deterministic=False):
        try:
            os.close(os.open(self.prepro.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().one_epi(deterministic)
        time.sleep(3600)


class DieOnceWorker(CountingWorker):
    """The first worker asked to load weights dies (its process exits) instead; later ones,
    a replacement included, load them."""

    def set_pol_state(self, state_dict):
        try:
            os.close(os.open(self.prepro.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().set_pol_state(state_dict)
        os._exit(1)


def test_base_sample_worker_is_abstract():
    env = GymEnv("Pendulum-v1")
    with pytest.raises(TypeError):
        raysampler.BaseSampleWorker(gaussian_pol(env), env, 0, 0)
    worker = raysampler.DefaultSampleWorker(gaussian_pol(env), env, 0, 1)
    env.reset(seed=0)
    length, epi = worker.one_epi(True)
    assert length == 200 and epi["obs"].dtype == np.float32


def test_ray_sampler_runs_a_users_worker_cls(tmp_path):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance of another test is running")
    # the actors import CountingWorker from this file: put tests/ on their path
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), tests_dir) if p)
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        env = GymEnv("Pendulum-v1")
        pol = gaussian_pol(env)
        with pytest.raises(ValueError, match="worker_cls"):
            raysampler.EpiSampler(env, pol, 2, worker_cls=object)
        with pytest.raises(ValueError, match="num_envs: not used with worker_cls"):
            raysampler.EpiSampler(env, pol, 2, worker_cls=CountingWorker, num_envs=4)
        # 0.x's positional order, node_info as 0.x's default {}
        sampler = raysampler.EpiSampler(env, pol, 2, lambda o: o * 0, 3, CountingWorker, {})
        epis = sampler.sample(pol, max_epis=5, deterministic=True)
        assert len(epis) == 5
        assert all(e["det"] == 1 and not e["obs"].any() for e in epis)
        assert {float(e["rews"][0]) for e in epis} <= {0.0, 1.0}
        assert all(e["real_rews"] is e["rews"] for e in epis)  # as EpiSampler's episodes
        epis = sampler.sample(max_steps=7)  # stops launching once 7 steps are reached
        assert sum(len(e["rews"]) for e in epis) >= 7 and len(epis) <= 4
        sampler.set_pol_state(pol.state_dict())
        with pytest.raises(ValueError, match="state_dict: not available with worker_cls"):
            sampler.state_dict()
        sampler.close()

        # a stuck worker: with timeout, an error naming it, and a replacement for the next call
        # (10 s times episodes only: the sampler waits for a worker's start, 9 s beside a
        # busy core, before a call's timeout starts, and for a replacement's too)
        hang = raysampler.EpiSampler(
            env, pol, 1, FlagPrepro(str(tmp_path / "hung")), 3, HangOnceWorker, timeout=10
        )
        with pytest.raises(TimeoutError, match=r"workers \[0\] \(seed 3\) did not finish"):
            hang.sample(max_epis=1)
        assert len(hang.sample(max_epis=2)) == 2
        hang.close()
        # a worker that dies between episodes (loading weights): replaced, named, and the
        # call goes on (every later call failed with Ray's ActorDiedError)
        die = raysampler.EpiSampler(
            env, pol, 1, FlagPrepro(str(tmp_path / "died")), 3, DieOnceWorker, timeout=120
        )
        with pytest.warns(RuntimeWarning, match=r"workers \[0\] \(seed 3\) died or did not"):
            assert len(die.sample(pol, max_epis=2)) == 2
        assert len(die.sample(pol, max_epis=1)) == 1
        die.close()

        sampler = raysampler.EpiSampler(env, pol, 1, worker_cls=raysampler.DefaultSampleWorker)
        epis = sampler.sample(max_epis=1, deterministic=True)
        sampler.close()
        assert len(epis) == 1 and epis[0]["obs"].shape == (200, 3)
        # machina's engine on more actors than this Ray's 1 CPU: placed, as 0.x's (no CPU each)
        with raysampler.EpiSampler(env, pol, 2, timeout=120) as sampler:
            assert len(sampler.sample(max_epis=2)) == 2
        np.testing.assert_allclose(epis[0]["acs"], epis[0]["a_is"]["mean"], rtol=1e-6, atol=1e-7)
    finally:
        ray.shutdown()


def _seq_traj():
    rng = np.random.default_rng(0)
    epis = ef.set_all_pris(make_random_epis(rng, 3, max_len=10), 1.0)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_seq_pris(traj, 2)
    traj.register_epis()
    return traj


@pytest.mark.parametrize(
    "old_args, old_kwargs",
    [((True, 0.5, 0.01), {}), ((True, 0.5), dict(beta_step=0.01))],
)
def test_prioritized_random_batch_rnn_once_in_0x_order(old_args, old_kwargs):
    """0.x: (batch_size, seq_length, return_indices, init_beta, beta_step) positionally."""
    traj = _seq_traj()
    ours, old = copy.copy(traj), copy.copy(traj)
    ours.generator.manual_seed(3)
    old.generator.manual_seed(3)
    for _ in range(2):
        b_ours, i_ours = ours.prioritized_random_batch_rnn_once(
            4, 2, True, "proportional", 0.6, 0.5, 0.01
        )
        b_old, i_old = old.prioritized_random_batch_rnn_once(4, 2, *old_args, **old_kwargs)
        assert torch.equal(i_ours, i_old)
        assert b_ours.keys() == b_old.keys()
        for key in b_ours:
            assert torch.equal(b_ours[key], b_old[key])
    assert old.pri_beta == pytest.approx(ours.pri_beta) and ours.pri_beta != 0.5
    with pytest.raises(ValueError, match="^init_beta: expected"):
        copy.copy(traj).prioritized_random_batch_rnn_once(4, 2, False, 1.5)
