"""machina.samplers.workers: worker processes (factories pickled by value, a killed worker
replaced, none left after close or after the parent dies)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import gymnasium as gym
import pytest
from sampler_parts import ToyEnv, cartpole, categorical_pol, lengths

from machina.pols import RandomPol
from machina.samplers import EpiSampler


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


def test_ids_registered_by_the_script_are_known_to_the_workers(tmp_path):
    """Ids the script registers (a fresh worker process never ran that code), made by a
    gymnasium.make factory in two workers: the sampler registers them there first, one
    with a class of the script's and one with gymnasium's own entry point; an id whose
    entry point cannot be loaded there (a module imported from outside sys.path) is
    skipped without breaking the others."""
    import importlib.util

    (tmp_path / "machina_unloadable_env.py").write_text("class Env:\n    pass\n")
    spec = importlib.util.spec_from_file_location(
        "machina_unloadable_env", tmp_path / "machina_unloadable_env.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gym.register("MachinaScriptToy-v0", entry_point=ToyEnv, kwargs={"length": 3})
    gym.register(
        "MachinaScriptPendulum-v0",
        entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
        max_episode_steps=7,
    )
    gym.register("MachinaUnloadable-v0", entry_point=module.Env)
    try:
        pol = RandomPol(ToyEnv.observation_space, ToyEnv.action_space)
        with EpiSampler(lambda: gym.make("MachinaScriptToy-v0"), pol, num_parallel=2) as s:
            assert lengths(s.sample(pol, max_epis=4)) == [3] * 4
        env = gym.make("MachinaScriptPendulum-v0")
        pol = RandomPol(env.observation_space, env.action_space)
        factory = lambda: gym.make("MachinaScriptPendulum-v0")  # noqa: E731
        with EpiSampler(factory, pol, num_parallel=2) as s:
            assert lengths(s.sample(pol, max_epis=4)) == [7] * 4
    finally:
        for env_id in ("MachinaScriptToy-v0", "MachinaScriptPendulum-v0", "MachinaUnloadable-v0"):
            del gym.envs.registry[env_id]


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
