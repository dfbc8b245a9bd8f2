"""EpiSampler on gymnasium vector environments (issue 12, section 1): the same whole episodes,
budgets, seeds and episode keys as on single environments, for every autoreset mode.

References: per-slot replays in single environments (a ``SyncVectorEnv``'s sub-environment
``i`` is seeded ``seed + i``, as the per-env engine seeds slot ``i``), the per-env engine's
own episodes (``SAME_STEP`` and ``DISABLED`` give the same draws), and gymnasium's single
CartPole as the physics reference of the native vector CartPole (one shared RNG: no replay).
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import AutoresetMode

from machina.envs import GymEnv
from machina.pols import make_pol
from machina.prepro import BasePrePro
from machina.samplers import EpiSampler
from machina.samplers.engine import BatchEngine, EngineSpec

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]
KEYS = ("obs", "acs", "rews", "next_obs", "terms", "truncs", "dones")


def policy(env_id: str = "CartPole-v1", rnn: bool = False, seed: int = 0) -> torch.nn.Module:
    """A small policy; on CartPole it pushes left 9 times in 10, so that episodes end by
    termination (about 10 steps) as often as by a 10-step limit."""
    env = gym.make(env_id)
    torch.manual_seed(seed)
    pol = make_pol(env.observation_space, env.action_space, rnn=rnn, h_size=16)
    if env_id == "CartPole-v1" and not rnn:
        last = [m for m in pol.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.copy_(torch.tensor([1.1, -1.1]))
    return pol


def sync_vec(num_envs: int, mode: AutoresetMode, limit: int, env_id: str = "CartPole-v1"):
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": mode},
        max_episode_steps=limit,
    )


def native_vec(num_envs: int, limit: int):
    return gym.make_vec(
        "CartPole-v1",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        max_episode_steps=limit,
    )


def assert_same_episodes(epis, ref):
    assert len(epis) == len(ref)
    for i, (a, b) in enumerate(zip(epis, ref)):
        for key in KEYS:
            assert a[key].dtype == b[key].dtype, (i, key)
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"episode {i} {key}")
        assert sorted(a["a_is"]) == sorted(b["a_is"])
        for key in a["a_is"]:
            np.testing.assert_array_equal(a["a_is"][key], b["a_is"][key])
        assert sorted(a["e_is"]) == sorted(b["e_is"])
        for key in a["e_is"]:
            np.testing.assert_array_equal(a["e_is"][key], b["e_is"][key])


def assert_whole(epi):
    """One whole episode: the keys line up, it ends at its last step only."""
    length = len(epi["obs"])
    assert length >= 1
    for key in KEYS:
        assert len(epi[key]) == length
    np.testing.assert_array_equal(epi["obs"][1:], epi["next_obs"][:-1])
    assert epi["dones"][-1] and not epi["dones"][:-1].any()
    assert not epi["terms"][:-1].any() and not epi["truncs"][:-1].any()
    np.testing.assert_array_equal(epi["dones"], epi["terms"] | epi["truncs"])


def replay_slots(epis_per_slot, env_id, limit, seed, cap=None):
    """Each slot's episodes, step by step, in one single environment seeded ``seed + slot``
    and reset (unseeded) after each episode; ``cap``: the sampler's cut (truncated)."""
    for slot, epis in enumerate(epis_per_slot):
        env = gym.make(env_id, max_episode_steps=limit)
        ob, _ = env.reset(seed=seed + slot)
        for epi in epis:
            assert_whole(epi)
            np.testing.assert_array_equal(epi["obs"][0], ob)
            for t, ac in enumerate(epi["acs"]):
                ob, rew, term, trunc, _ = env.step(ac)
                if cap is not None and t + 1 == cap and not (term or trunc):
                    trunc = True
                assert np.float32(rew) == epi["rews"][t]
                np.testing.assert_array_equal(ob, epi["next_obs"][t])
                assert (bool(term), bool(trunc)) == (epi["terms"][t], epi["truncs"][t]), t
            ob, _ = env.reset()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("fast", [True, False], ids=["numpy", "torch"])
def test_sync_vector_env_replays_per_slot(mode, fast):
    """Every autoreset mode: each slot's episodes are its sub-environment's, step by step
    (terminated and truncated mixed: a 10-step limit), exactly ``max_epis`` episodes."""
    pol = policy()
    with EpiSampler(sync_vec(4, mode, 10), pol, seed=7, fast_inference=fast) as sampler:
        assert sampler.num_envs == 4
        epis = sampler.sample(pol, max_epis=12)
    assert len(epis) == 12
    ends = [(bool(e["terms"][-1]), bool(e["truncs"][-1])) for e in epis]
    assert (True, False) in ends and (False, True) in ends  # both kinds of ends
    replay_slots([epis[3 * i : 3 * i + 3] for i in range(4)], "CartPole-v1", 10, seed=7)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_fewer_episodes_than_slots(mode):
    """max_epis below the number of slots: the slots without a quota never begin (their
    sub-environments still step, with a valid action) and the others' episodes are whole."""
    pol = policy()
    with EpiSampler(sync_vec(4, mode, 10), pol, seed=2) as sampler:
        epis = sampler.sample(pol, max_epis=2)
    assert len(epis) == 2
    replay_slots([[epis[0]], [epis[1]]], "CartPole-v1", 10, seed=2)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_cap_cuts_with_masked_reset(mode):
    """max_episode_steps below the environment's own limit: cut episodes are truncated and
    their sub-environments reset (reset_mask), as the per-env engine resets a cut env."""
    pol = policy()
    sampler = EpiSampler(sync_vec(3, mode, 40), pol, seed=3, max_episode_steps=6)
    epis = sampler.sample(pol, max_epis=9)
    sampler.close()
    assert max(len(e["obs"]) for e in epis) == 6
    replay_slots([epis[3 * i : 3 * i + 3] for i in range(3)], "CartPole-v1", 40, seed=3, cap=6)


@pytest.mark.parametrize(
    "env_id, mode, kwargs",
    [
        ("CartPole-v1", AutoresetMode.SAME_STEP, {}),
        ("CartPole-v1", AutoresetMode.DISABLED, {"fast_inference": False}),
        ("Pendulum-v1", AutoresetMode.SAME_STEP, {}),
        ("CartPole-v1", AutoresetMode.SAME_STEP, {"prepro": "BasePrePro"}),
        ("CartPole-v1", AutoresetMode.SAME_STEP, {"rnn": True}),
    ],
)
def test_same_episodes_as_the_per_env_engine(env_id, mode, kwargs):
    """SAME_STEP / DISABLED SyncVectorEnv: a sample call gives the per-env engine's
    episodes, bytes, for the same seed (same slot seeds, same policy draws)."""
    kwargs = dict(kwargs)
    pol = policy(env_id, rnn=kwargs.pop("rnn", False))
    if kwargs.get("prepro") == "BasePrePro":
        prepro = BasePrePro(gym.make(env_id).observation_space, clip=2.0)
        prepro.update(np.random.default_rng(0).normal(size=(50, 4)))
        kwargs["prepro"] = prepro
    for budget in ({"max_steps": 60}, {"max_epis": 5, "deterministic": True}):
        vec = EpiSampler(sync_vec(4, mode, 15, env_id), pol, seed=11, **kwargs)
        per_env = EpiSampler(
            lambda: gym.make(env_id, max_episode_steps=15), pol, seed=11, num_envs=4, **kwargs
        )
        assert_same_episodes(vec.sample(pol, **budget), per_env.sample(pol, **budget))
        vec.close()
        per_env.close()


def check_cartpole_physics(epis, limit, cap=None, limit_keeps_term=True):
    """The native vector CartPole's transitions against gymnasium's single CartPole stepped
    from each observation (float32 observations of a float64 state: a tolerance), its ends
    against the termination rule and the length limit, its first observations against the
    reset bounds. ``limit_keeps_term=False``: at the limit the environment reports a
    truncation only (envpool's convention)."""
    ref = gym.make("CartPole-v1").unwrapped
    ref.reset(seed=0)
    for epi in epis:
        assert_whole(epi)
        assert np.all(np.abs(epi["obs"][0]) <= 0.05)
        np.testing.assert_array_equal(epi["rews"], 1.0)
        for t, (ob, ac) in enumerate(zip(epi["obs"], epi["acs"])):
            ref.state, ref.steps_beyond_terminated = ob.astype(np.float64), None
            next_ob, _, term, _, _ = ref.step(int(ac))
            np.testing.assert_allclose(epi["next_obs"][t], next_ob, rtol=1e-5, atol=1e-6)
            length = t + 1
            # the env's own limit truncates at a termination too (gymnasium's TimeLimit does);
            # the sampler's cap only cuts an episode that did not end
            trunc = length == limit or (not term and cap is not None and length == cap)
            if length == limit and not limit_keeps_term:
                term = False
            assert (bool(term), bool(trunc)) == (epi["terms"][t], epi["truncs"][t])


@pytest.mark.parametrize("fast", [True, False], ids=["numpy", "torch"])
def test_native_vector_env_next_step_budgets(fast):
    """The native vector CartPole (NEXT_STEP, one RNG): whole episodes per the physics,
    max_epis exact, max_steps met by whole episodes, deterministic and stochastic."""
    pol = policy()
    with EpiSampler(native_vec(8, 12), pol, seed=1, fast_inference=fast) as sampler:
        epis = sampler.sample(pol, max_epis=20)
        assert len(epis) == 20
        check_cartpole_physics(epis, 12)
        epis = sampler.sample(pol, max_steps=150, deterministic=True)
        assert 150 <= sum(len(e["obs"]) for e in epis) < 150 + 8 * 12
        check_cartpole_physics(epis, 12)
        for epi in epis:  # deterministic: the mode of pi
            np.testing.assert_array_equal(epi["acs"], np.argmax(epi["a_is"]["pi"], axis=1))


def test_native_vector_env_cut_waits_for_its_own_end():
    """A vector environment without reset_mask: a cut episode is truncated, and its slot
    starts again only after the sub-environment ended by itself (a fresh reset state)."""
    pol = policy()
    with EpiSampler(native_vec(4, 500), pol, seed=2, max_episode_steps=5) as sampler:
        epis = sampler.sample(pol, max_epis=12)
    assert len(epis) == 12 and max(len(e["obs"]) for e in epis) == 5
    check_cartpole_physics(epis, 500, cap=5)


class EndlessVec(gym.vector.VectorEnv):
    """A NEXT_STEP vector environment whose episodes never end, without reset_mask."""

    def __init__(self, num_envs: int = 2) -> None:
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, 2)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, 2)

    def reset(self, *, seed=None, options=None):
        return np.zeros((self.num_envs, 2), np.float32), {}

    def step(self, actions):
        n = self.num_envs
        return np.zeros((n, 2), np.float32), np.ones(n), np.zeros(n, bool), np.zeros(n, bool), {}


def test_cut_in_an_endless_vector_env_raises_instead_of_hanging():
    pol = make_pol(EndlessVec().single_observation_space, EndlessVec().single_action_space)
    sampler = EpiSampler(EndlessVec(), pol, max_episode_steps=3)
    with pytest.raises(RuntimeError, match=r"environment 0 .*did not end within 10,000 steps"):
        sampler.sample(pol, max_epis=4)
    sampler.close()


def test_prepro_on_the_vector_path():
    """With a prepro: obs and next_obs are the prepro of the raw observations, which are
    kept in e_is["raw_obs"] (what BasePrePro.update_with_epis folds in)."""
    pol = policy()
    prepro = BasePrePro(gym.make("CartPole-v1").observation_space, clip=1.5)
    prepro.update(np.random.default_rng(1).normal(size=(100, 4)))
    with EpiSampler(native_vec(6, 12), pol, seed=4, prepro=prepro) as sampler:
        epis = sampler.sample(pol, max_steps=100)
    for epi in epis:
        assert_whole(epi)
        np.testing.assert_array_equal(epi["obs"], prepro.prepro(epi["e_is"]["raw_obs"]))
    prepro.update_with_epis(epis)


class NanAtCall:
    """A batched prepro (BasePrePro's) that puts NaN in row ``row`` of its call ``call``
    (0: the first reset's observations, 2: those of the second step)."""

    batched = True

    def __init__(self, call, row):
        self.prepro = BasePrePro(gym.make("CartPole-v1").observation_space)
        self.call, self.row, self.calls = call, row, 0

    def __call__(self, obs):
        out = self.prepro(obs)
        if self.calls == self.call:
            out[self.row] = np.nan
        self.calls += 1
        return out


@pytest.mark.parametrize("call,phase", [(0, "reset"), (2, "step 2")])
def test_non_finite_prepro_output_on_the_vector_path_blames_the_prepro(call, phase):
    pol = policy()
    pattern = (
        r"the prepro returned a non-finite observation .* from a finite raw observation, for "
        rf"environment 3 \(seed 7, sub-environment 3 of a vector environment\) during {phase}"
    )
    with EpiSampler(native_vec(6, 12), pol, seed=4, prepro=NanAtCall(call, 3)) as sampler:
        with pytest.raises(RuntimeError, match=pattern):
            sampler.sample(pol, max_steps=30)


def test_infos_become_e_is_columns():
    """A vector environment's numeric infos (here RecordEpisodeStatistics's per-step ones are
    not numeric columns; a wrapper adds one) land in e_is, per episode step."""

    class StepCount(gym.vector.VectorWrapper):
        def step(self, actions):
            obs, rews, terms, truncs, infos = self.env.step(actions)
            infos = dict(infos)
            infos["count"] = np.full(self.num_envs, 7, np.int64)
            infos["_count"] = np.ones(self.num_envs, bool)
            return obs, rews, terms, truncs, infos

    pol = policy()
    with EpiSampler(StepCount(sync_vec(3, AutoresetMode.SAME_STEP, 8)), pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=6)
    for epi in epis:
        np.testing.assert_array_equal(epi["e_is"]["count"], np.full(len(epi["obs"]), 7))


class _StepInfoEnv(gym.Env):
    """Counts its steps in obs and in info["t"]; terminates after 5 (a reset's info: t 0)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {"t": 0}

    def step(self, action):
        self.t += 1
        # "half" is an int at the first step, floats after: its field must widen, not cut
        info = {"t": self.t, "half": 0 if self.t == 1 else self.t / 2}
        return np.array([self.t], np.float32), 1.0, self.t >= 5, False, info


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_env_infos_of_every_step_in_every_autoreset_mode(mode):
    """SAME_STEP puts an episode's last step's info under final_info (the top level holds
    the next episode's reset info): e_is still has each step's own info, as one env gives."""
    one = _StepInfoEnv()
    pol = make_pol(one.observation_space, one.action_space)
    env = gym.vector.SyncVectorEnv([_StepInfoEnv] * 2, autoreset_mode=mode)
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=4)
    assert len(epis) == 4
    for epi in epis:
        np.testing.assert_array_equal(epi["e_is"]["t"], np.arange(1, 6))
        np.testing.assert_array_equal(epi["e_is"]["half"], [0.0, 1.0, 1.5, 2.0, 2.5])


def test_state_dict_continues_exactly():
    """Native, synchronous and asynchronous vector envs (the asynchronous ones' generators
    fetched from and restored into their sub-environments' processes)."""
    pol = policy()
    async_vec = functools.partial(
        gym.make_vec, "CartPole-v1", 3, vectorization_mode="async", max_episode_steps=12
    )
    # machina's GymEnv as the sub-environment: its np_random is assigned in its process
    gym_envs = [lambda: GymEnv(gym.make("CartPole-v1", max_episode_steps=12))] * 2
    for make in (
        lambda: native_vec(4, 12),
        lambda: sync_vec(4, AutoresetMode.NEXT_STEP, 12),
        async_vec,
        lambda: gym.vector.AsyncVectorEnv(gym_envs),
    ):
        a = EpiSampler(make(), pol, seed=5)
        a.sample(pol, max_steps=40)
        state = a.state_dict()
        b = EpiSampler(make(), pol, seed=99)
        b.load_state_dict(state)
        assert_same_episodes(a.sample(pol, max_steps=40), b.sample(pol, max_steps=40))
        a.close()
        b.close()


def test_a_vector_env_instance_is_closed_only_by_close():
    # a refused constructor call and a collected sampler closed the caller's vector env
    vec = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync", max_episode_steps=8)
    pendulum = gym.make("Pendulum-v1")
    wrong = make_pol(pendulum.observation_space, pendulum.action_space)
    with pytest.raises(ValueError, match="does not match the environment"):
        EpiSampler(vec, wrong)
    gc.collect()
    assert not vec.closed
    pol = policy()
    sampler = EpiSampler(vec, pol, seed=0)
    sampler.sample(pol, max_epis=2)
    del sampler
    gc.collect()
    assert not vec.closed
    with EpiSampler(vec, pol, seed=1) as sampler:
        assert len(sampler.sample(pol, max_epis=2)) == 2
    assert vec.closed  # the with block closes it, as close() does


class _NoRngCartPole(CartPoleEnv):
    """A sub-environment without ``np_random`` (its own generator under another name)."""

    @property
    def np_random(self):
        raise AttributeError("np_random")

    def reset(self, *, seed=None, options=None):
        if seed is not None or not hasattr(self, "rng"):
            self.rng = np.random.default_rng(seed)
        self.state = self.rng.uniform(-0.05, 0.05, size=(4,))
        self.steps_beyond_terminated = None
        return np.array(self.state, dtype=np.float32), {}


def test_async_vector_env_states_and_their_errors():
    pol = policy()
    # sub-environments without np_random: nothing to capture, and the workers live on
    # (gymnasium closes a worker whose get_attr raises)
    no_rng = [lambda: gym.wrappers.TimeLimit(_NoRngCartPole(), 12)] * 2
    with EpiSampler(gym.vector.AsyncVectorEnv(no_rng), pol, seed=5) as sampler:
        sampler.sample(pol, max_steps=20)
        sampler.state_dict()
        assert len(sampler.sample(pol, max_steps=20)) >= 2
    # a state of 1 + 3 generators does not restore into a native vector env's one
    make_async = functools.partial(
        gym.make_vec, "CartPole-v1", 3, vectorization_mode="async", max_episode_steps=12
    )
    with EpiSampler(make_async(), pol, seed=5) as a, EpiSampler(native_vec(3, 12), pol) as b:
        a.sample(pol, max_steps=20)
        with pytest.raises(ValueError, match="state: holds 4 generators .* has 1"):
            b.load_state_dict(a.state_dict())
    # gymnasium's worker without shared memory steps a reset after reset() in NEXT_STEP mode
    no_shm = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2, shared_memory=False)
    with pytest.raises(ValueError, match="shared_memory=False in NEXT_STEP"):
        EpiSampler(no_shm, pol)
    no_shm.close()


class _FailsOnce(gym.Wrapper):
    """Raises in its 5th step, once in all processes: the first to create ``marker``."""

    def __init__(self, env, marker):
        super().__init__(env)
        self.marker, self.count = marker, 0

    def step(self, action):
        self.count += 1
        if self.count == 5:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise ValueError("boom once")
        return self.env.step(action)


def test_an_async_vector_env_whose_worker_raised_is_remade(tmp_path):
    """gymnasium's AsyncVectorEnv closes the worker of a sub-environment that raised, for
    good: the error names it, a factory's vector env is made anew for the next sample, and
    the caller's own instance, which cannot be, is named instead of failing obscurely."""
    pol = policy()

    def make(marker):
        wrapper = functools.partial(_FailsOnce, marker=str(marker))
        return gym.make_vec("CartPole-v1", 2, vectorization_mode="async", wrappers=[wrapper])

    with EpiSampler(lambda: make(tmp_path / "factory"), pol, seed=0) as sampler:
        first = sampler._engine.slots.vec
        with pytest.raises(RuntimeError, match=r"closed the worker of sub-environment \d"):
            sampler.sample(pol, max_steps=40)
        state = sampler.state_dict()  # remade here too (it raised until a sample call)
        sampler.load_state_dict(state)
        epis = sampler.sample(pol, max_steps=40)
        assert sampler._engine.slots.vec is not first and first.unwrapped.closed
        assert sum(len(e["rews"]) for e in epis) >= 40
        for epi in epis:
            assert_whole(epi)
    vec = make(tmp_path / "instance")
    try:
        with EpiSampler(vec, pol, seed=0) as sampler:
            with pytest.raises(RuntimeError, match="boom once"):
                sampler.sample(pol, max_steps=40)
            with pytest.raises(RuntimeError, match="cannot step again.*factory"):
                sampler.sample(pol, max_steps=40)
    finally:
        vec.close()
    with EpiSampler(vec, pol, seed=0) as sampler:  # closed by its owner
        with pytest.raises(RuntimeError, match=r"slots 0\.\.1, seeds 0\.\.1\) was closed"):
            sampler.sample(pol, max_steps=40)


def test_factory_sizes_and_errors():
    pol = policy()
    # A factory in this process: the default num_envs=1 takes the vector env's size.
    with EpiSampler(lambda: native_vec(5, 10), pol) as sampler:
        assert sampler.num_envs == 5
        assert len(sampler.sample(pol, max_epis=5)) == 5
    with pytest.raises(ValueError, match=r"num_envs: expected .*\(5\).* given 3"):
        EpiSampler(lambda: native_vec(5, 10), pol, num_envs=3)
    vec = native_vec(4, 10)
    with pytest.raises(ValueError, match=r"env: a VectorEnv instance .*num_parallel=2"):
        EpiSampler(vec, pol, num_parallel=2, num_envs=4)
    with pytest.raises(ValueError, match=r"num_envs: expected .*\(4\).* given 3"):
        EpiSampler(vec, pol, num_envs=3)
    vec.close()

    class DictObs(EndlessVec):
        def __init__(self) -> None:
            super().__init__()
            self.single_observation_space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})

    with pytest.raises(TypeError, match=r"single_observation_space is Dict.*Box, Discrete"):
        EpiSampler(DictObs(), pol)
    bad_pol = policy("Pendulum-v1")
    with pytest.raises(ValueError, match=r"pol.observation_space"):
        EpiSampler(native_vec(2, 10), bad_pol)


def test_factory_in_worker_processes():
    """A factory of SyncVectorEnv in 2 workers: each worker's sub-environments are its global
    slots, seeded seed + slot (replayed per slot); a num_envs other than the factory's size
    is an error naming num_envs (raised where the worker builds its engine)."""
    pol = policy()
    sampler = EpiSampler(
        lambda: sync_vec(3, AutoresetMode.SAME_STEP, 12), pol, num_parallel=2, num_envs=3, seed=8
    )
    try:
        epis = sampler.sample(pol, max_epis=12)
    finally:
        sampler.close()
    replay_slots([epis[2 * i : 2 * i + 2] for i in range(6)], "CartPole-v1", 12, seed=8)
    spec = EngineSpec(index=1, slot_ids=[2, 3], seed=8, rng_seed=0, seeded=[False, False])
    with pytest.raises(ValueError, match=r"num_envs: expected .*\(3\), given 2"):
        BatchEngine.from_spec(lambda: sync_vec(3, AutoresetMode.SAME_STEP, 12), spec)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_factory_on_ray_actors():
    """The Ray backend builds the same engine in each actor: a factory of SyncVectorEnv
    there gives the slots' own episodes (replayed per slot, seed + slot)."""
    pol = policy()
    sampler = EpiSampler(
        lambda: sync_vec(3, AutoresetMode.NEXT_STEP, 12),
        pol,
        num_parallel=1,
        num_envs=3,
        seed=4,
        backend="ray",
        timeout=120,
    )
    try:
        epis = sampler.sample(pol, max_epis=6)
    finally:
        sampler.close()
    replay_slots([epis[2 * i : 2 * i + 2] for i in range(3)], "CartPole-v1", 12, seed=4)


@pytest.mark.skipif(importlib.util.find_spec("envpool") is None, reason="envpool not installed")
def test_envpool_through_the_same_door():
    """envpool's gymnasium CartPole (NEXT_STEP, reset by env_id): whole episodes per the
    physics, its infos as e_is columns (elapsed_step counts the episode's steps), cuts reset
    with reset_mask."""
    import envpool

    pol = policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # envpool's Box precision warnings
        env = envpool.make_gymnasium("CartPole-v1", num_envs=6, seed=3, max_episode_steps=12)
        assert env.single_observation_space is not None  # built lazily, with the warnings
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=18)
        assert len(epis) == 18
        check_cartpole_physics(epis, 12, limit_keeps_term=False)
        for epi in epis:
            np.testing.assert_array_equal(
                epi["e_is"]["elapsed_step"], np.arange(1, len(epi["obs"]) + 1)
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = envpool.make_gymnasium("CartPole-v1", num_envs=4, seed=3)
        assert env.single_observation_space is not None
    with EpiSampler(env, pol, max_episode_steps=5) as sampler:
        epis = sampler.sample(pol, max_epis=12)
    assert max(len(e["obs"]) for e in epis) == 5
    check_cartpole_physics(epis, 500, cap=5, limit_keeps_term=False)
