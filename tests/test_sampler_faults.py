"""Faults at the sampler's edges (issue 11): non-finite rewards and policy outputs, actions of
the wrong shape, Dict observations, never-ending episodes, stuck worker processes."""

import math
import os
import signal
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina.nets import PolNet
from machina.pols import CategoricalPol, GaussianPol
from machina.samplers import EpiSampler


class RewEnv(gym.Env):
    """A 1-D Box environment of fixed-length episodes; the reward of step ``bad_step`` of its
    first episode is ``bad_rew`` (NaN by default). Never ends when ``length`` is None."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length=6, bad_step=None, bad_rew=math.nan):
        self.length, self.bad_step, self.bad_rew = length, bad_step, bad_rew
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return np.array([0.0, self.np_random.normal()], np.float32), {}

    def step(self, action):
        self.t += 1
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        obs = np.array([self.t, float(action[0])], np.float32)
        rew = 1.0
        if self.episode == 0 and self.t == self.bad_step:
            rew = self.bad_rew
        done = self.length is not None and self.t >= self.length
        return obs, rew, done, False, {}


def gaussian(env, nan=False):
    torch.manual_seed(0)
    pol = GaussianPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    if nan:
        with torch.no_grad():
            pol.net.head.mean_layer.weight[0, 0] = math.nan
    return pol


def nan_parameter(pol):
    with torch.no_grad():
        next(pol.parameters()).view(-1)[0] = math.nan
    return pol


@pytest.mark.parametrize("num_parallel", [1, 2])
@pytest.mark.parametrize("bad_rew", [math.nan, math.inf])
def test_non_finite_reward_names_the_environment(num_parallel, bad_rew):
    env = RewEnv(bad_step=3, bad_rew=bad_rew)
    pol = gaussian(env)
    with EpiSampler(env, pol, num_parallel=num_parallel, seed=10) as sampler:
        pattern = r"environment [01] \(seed 1[01]\) returned a non-finite reward \((nan|inf)\)"
        with pytest.raises(RuntimeError, match=pattern + r" during step 3"):
            sampler.sample(pol, max_epis=2)
        # usable afterwards: only the first episode of each env was bad
        assert len(sampler.sample(pol, max_epis=2)) == 2


@pytest.mark.parametrize("fast_inference", [True, False])
@pytest.mark.parametrize("deterministic", [False, True])
def test_nan_gaussian_actions_blame_the_policy(fast_inference, deterministic):
    env = RewEnv()
    pol = nan_parameter(gaussian(env))
    with EpiSampler(env, pol, seed=0, fast_inference=fast_inference) as sampler:
        with pytest.raises(RuntimeError, match=r"the policy returned a non-finite action") as info:
            sampler.sample(pol, max_epis=2, deterministic=deterministic)
        message = str(info.value)
        assert "environment 0 (seed 0)" in message and "at step 1" in message
        assert "policy is at fault, not the environment" in message


def test_nan_actions_that_break_the_env_blame_the_policy():
    """Pendulum fed NaN torques returns NaN observations: the error names the policy."""
    env = gym.make("Pendulum-v1")
    pol = nan_parameter(gaussian(env))
    with EpiSampler(env, pol, num_parallel=2, seed=0) as sampler:
        with pytest.raises(RuntimeError, match=r"sampler worker .*the policy returned a non-fin"):
            sampler.sample(pol, max_steps=10)


@pytest.mark.parametrize("fast_inference", [True, False])
@pytest.mark.parametrize("deterministic", [False, True])
def test_nan_categorical_probabilities_blame_the_policy(fast_inference, deterministic):
    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    pol = CategoricalPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    nan_parameter(pol)
    with EpiSampler(env, pol, seed=0, fast_inference=fast_inference) as sampler:
        # Sampling from NaN probabilities raises the distribution's own error; the mode
        # (argmax of NaN is 0) would store NaN pi: the sampler's check names the policy.
        pattern = r"invalid probability pi|pi: expected probabilities"
        with pytest.raises((RuntimeError, ValueError), match=pattern):
            sampler.sample(pol, max_epis=1, deterministic=deterministic)


class SpacelessPol(torch.nn.Module):
    """A policy without spaces that acts with actions of ``shape`` per environment."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, obs):
        ac = torch.zeros((len(obs), *self.shape))
        return ac.numpy(), ac, {}

    def deterministic_ac_real(self, obs):
        return self(obs)


def test_wrong_action_shape_from_a_policy_without_spaces():
    env = gym.make("Pendulum-v1")
    pol = SpacelessPol((3,))
    with EpiSampler(env, pol, num_envs=2, seed=0) as sampler:
        with pytest.raises(
            ValueError, match=r"pol: returned actions of shape \(3,\).*expects \(1,\)"
        ):
            sampler.sample(pol, max_steps=10)
        epis = sampler.sample(SpacelessPol((1,)), max_steps=10)
        assert epis[0]["acs"].shape[1:] == (1,)


def test_dict_observations_say_how_to_flatten():
    def make():
        env = gym.make("Pendulum-v1")
        return gym.wrappers.TransformObservation(
            env,
            lambda o: {"x": o},
            gym.spaces.Dict({"x": env.observation_space}),
        )

    with pytest.raises(TypeError, match=r"Dict.*FlattenObservation"):
        EpiSampler(make, SpacelessPol((1,)), seed=0)
    # what the message says to do works
    flat = gym.wrappers.FlattenObservation(make())
    with EpiSampler(lambda: gym.wrappers.FlattenObservation(make()), gaussian(flat)) as sampler:
        assert sampler.sample(gaussian(flat), max_steps=5)[0]["obs"].shape[1:] == (3,)
    # ... and so does a prepro that maps each Dict / Tuple observation to an array (in this
    # process and in workers): it gets the observation as the env returns it
    pol = gaussian(flat)
    for num_parallel in (1, 2):
        with EpiSampler(make, pol, prepro=lambda d: d["x"] * 2.0, num_parallel=num_parallel,
                        seed=0, max_episode_steps=6) as sampler:  # fmt: skip
            epis = sampler.sample(pol, max_epis=2)
        with EpiSampler(lambda: gym.wrappers.FlattenObservation(make()), pol,
                        prepro=lambda o: o * 2.0, num_parallel=num_parallel, seed=0,
                        max_episode_steps=6) as ref:  # fmt: skip
            expected = ref.sample(pol, max_epis=2)
        for epi, exp in zip(epis, expected):
            np.testing.assert_array_equal(epi["obs"], exp["obs"])
            np.testing.assert_array_equal(epi["next_obs"], exp["next_obs"])
            assert epi["truncs"][-1] and "raw_obs" not in epi["e_is"]
    tuple_env = gym.wrappers.TransformObservation(
        gym.make("Pendulum-v1"),
        lambda o: (o[:1], o[1:]),
        gym.spaces.Tuple((flat.observation_space,) * 2),
    )
    with EpiSampler(tuple_env, pol, prepro=np.concatenate, seed=0) as sampler:
        assert sampler.sample(pol, max_steps=5)[0]["obs"].shape[1:] == (3,)


def test_never_ending_episodes_are_cut_and_truncated():
    """An env with no time limit (no spec) that never terminates: sample returns."""
    env = RewEnv(length=None)
    assert env.spec is None
    pol = gaussian(env)
    with EpiSampler(env, pol, seed=0, max_episode_steps=50) as sampler:
        epis = sampler.sample(pol, max_steps=20)
        assert [len(e["rews"]) for e in epis] == [50]
        assert epis[0]["truncs"][-1] and not epis[0]["terms"].any()
        # the final observation is the one after the 50th step
        assert epis[0]["next_obs"][-1][0] == 50 and epis[0]["obs"][-1][0] == 49
        epis = sampler.sample(pol, max_epis=3)
        assert [len(e["rews"]) for e in epis] == [50] * 3


def test_never_ending_default_cap_warns_and_bounds_memory():
    env = RewEnv(length=None)
    pol = gaussian(env)
    with EpiSampler(env, pol, num_envs=2, seed=0) as sampler:
        with pytest.warns(RuntimeWarning, match=r"10,000 steps and was cut.*max_episode_steps"):
            epis = sampler.sample(pol, max_steps=20)
        assert [len(e["rews"]) for e in epis] == [10_000, 10_000]
        assert all(e["truncs"][-1] for e in epis)
    # in worker processes: raised again in this process, naming the worker (they were only
    # printed by the worker, out of reach of warnings filters and pytest.warns)
    with EpiSampler(env, pol, num_parallel=2, seed=0) as sampler:
        with pytest.warns(RuntimeWarning, match=r"^sampler worker 1 .*: environment 1: .*10,000"):
            sampler.sample(pol, max_steps=20)


class SlowStepWarning(UserWarning):
    """A user's warning category whose constructor takes other arguments."""

    def __init__(self, step, seconds):
        super().__init__(f"step {step} took {seconds} s")


class WarningRewEnv(RewEnv):
    def step(self, action):
        warnings.warn(SlowStepWarning(1, 3.0), stacklevel=2)
        return super().step(action)


def test_a_workers_warning_of_a_users_category_reaches_the_caller_as_its_builtin_base():
    """The driver may not unpickle or construct a user's category: its nearest built-in
    base carries the text and the category's name (a SlowStepWarning(step, s) broke the
    call)."""
    env = WarningRewEnv(length=3)
    pol = gaussian(env)
    with EpiSampler(env, pol, num_parallel=2, seed=0) as sampler:
        with pytest.warns(UserWarning, match=r"^sampler worker 0 .*: SlowStepWarning: step 1"):
            assert len(sampler.sample(pol, max_epis=2)) == 2


def test_episode_cap_from_the_spec_and_argument():
    env = gym.make("CartPole-v1", max_episode_steps=7)
    pol = CategoricalPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    with EpiSampler(env, pol, seed=0) as sampler:
        assert max(len(e["rews"]) for e in sampler.sample(pol, max_epis=5)) <= 7
    # a cap below the spec's: cut, truncated; with prepro too
    with EpiSampler(env, pol, seed=0, max_episode_steps=3, prepro=lambda o: o * 2.0) as sampler:
        epis = sampler.sample(pol, max_epis=4)
        for e in epis:
            assert len(e["rews"]) <= 3
            assert e["truncs"][-1] or e["terms"][-1]
    with pytest.raises(ValueError, match=r"max_episode_steps: expected a positive integer"):
        EpiSampler(env, pol, max_episode_steps=0)
    # numpy's message from deep inside the setup before
    with pytest.raises(
        ValueError, match=r"seed: expected a non-negative integer or None, given -1"
    ):
        EpiSampler(env, pol, seed=-1)


def test_stopped_worker_times_out_is_killed_and_replaced():
    """A worker that stops answering (SIGSTOP) with timeout=3: a clear error in seconds naming
    the worker and its env slots; the worker is killed and replaced, the sampler usable."""
    env = RewEnv(length=5)
    pol = gaussian(env)
    with EpiSampler(env, pol, num_parallel=2, num_envs=2, seed=0, timeout=3) as sampler:
        assert len(sampler.sample(pol, max_epis=4)) == 4
        stuck = sampler._pool.workers[1]
        pid = stuck.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            pattern = r"sampler worker 1 \(pid \d+, env slots \[2, 3\], seeds \[2, 3\]\) did not "
            with pytest.raises(RuntimeError, match=pattern + r"answer within 3 s .*killed"):
                sampler.sample(pol, max_epis=4)
            # killed: its exit status is SIGKILL's (reaped by the sampler)
            assert stuck.proc is None
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        finally:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        epis = sampler.sample(pol, max_epis=4)
        assert len(epis) == 4 and sampler._pool.workers[1].proc.pid != pid


def test_timeout_needs_worker_processes():
    env = RewEnv()
    with pytest.raises(ValueError, match=r"timeout: needs worker processes"):
        EpiSampler(env, gaussian(env), timeout=1)


@pytest.mark.parametrize("num_envs", [1, 4])
def test_cap_with_slots_out_of_phase(num_envs):
    """CartPole's episodes end at various steps; a cap of 15 cuts the rest, per slot."""
    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    pol = CategoricalPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )
    with EpiSampler(env, pol, num_envs=num_envs, seed=0, max_episode_steps=15) as sampler:
        epis = sampler.sample(pol, max_epis=24)
    assert len(epis) == 24
    lengths = [len(e["rews"]) for e in epis]
    assert max(lengths) == 15 and min(lengths) < 15
    for e, n in zip(epis, lengths):
        np.testing.assert_array_equal(e["obs"][1:], e["next_obs"][:-1])
        assert e["truncs"][-1] == (n == 15 and not e["terms"][-1])
        assert e["terms"][-1] or e["truncs"][-1]


class _CloseCounted(gym.Wrapper):
    closed_count = 0

    def close(self):
        type(self).closed_count += 1
        super().close()


def test_a_factory_failing_for_a_later_slot_closes_the_environments_it_made():
    # the first two environments (a simulator, a process each, in real use) were never closed
    made = []
    _CloseCounted.closed_count = 0

    def factory():
        if len(made) == 2:
            raise OSError("license server unreachable")
        made.append(_CloseCounted(gym.make("CartPole-v1")))
        return made[-1]

    space = gym.make("CartPole-v1").observation_space
    pol = CategoricalPol(space, gym.spaces.Discrete(2), PolNet(space, gym.spaces.Discrete(2)))
    with pytest.raises(RuntimeError, match=r"environment 2 .*OSError: license server"):
        EpiSampler(factory, pol, num_envs=4)
    assert len(made) == 2 and _CloseCounted.closed_count == 2
