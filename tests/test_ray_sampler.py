"""Tests of EpiSampler(backend="ray") and the original's Ray entry points, on real Ray.

A local Ray instance (4 logical CPUs on whatever cores there are) is started once for the
module and shut down at its end; the cluster tests start their own two-node cluster
(``ray.cluster_utils.Cluster``, all on 127.0.0.1) and shut it down.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import forget_ray_address  # noqa: E402

from machina.envs import GymEnv  # noqa: E402
from machina.nets import PolNet  # noqa: E402
from machina.pols import CategoricalPol, GaussianPol  # noqa: E402
from machina.samplers import (  # noqa: E402
    DistributedEpiSampler,
    EpiSampler,
    raysampler,  # noqa: E402
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SlowEnv(gym.Env):
    """A toy: observation (t, 0), episodes of ``length`` steps, each step sleeps ``delay``
    seconds; ``hang_at``: that step sleeps an hour; ``fail_at``: that step raises, in the
    environment whose first reset was seeded with ``fail_seed`` (any, when None)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(
        self, length=5, delay=0.0, hang_at=None, fail_at=None, fail_seed=None, hang_flag=None
    ):
        self.length, self.delay, self.hang_at, self.fail_at = length, delay, hang_at, fail_at
        self.fail_seed = fail_seed
        # a file path: only the first environment to reach hang_at hangs (it creates the file)
        self.hang_flag = hang_flag
        self.first_seed = None
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.first_seed is None:
            self.first_seed = seed
        self.t = 0
        return np.array([0.0, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == self.hang_at:
            if self.hang_flag is None:
                time.sleep(3600)
            elif not os.path.exists(self.hang_flag):
                open(self.hang_flag, "w").close()
                time.sleep(3600)
        if self.t == self.fail_at and self.fail_seed in (None, self.first_seed):
            raise ValueError(f"boom at step {self.t}")
        if self.delay:
            time.sleep(self.delay)
        return np.array([self.t, 0.0], np.float32), 1.0, self.t >= self.length, False, {}


def categorical_pol(env):
    torch.manual_seed(0)
    return CategoricalPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )


def gaussian_pol(env):
    torch.manual_seed(0)
    return GaussianPol(
        env.observation_space, env.action_space, PolNet(env.observation_space, env.action_space)
    )


# The policy's float outputs (a_is) of one step computed in batches of different sizes (one
# env per actor against all slots in one process): BLAS may take another kernel and order of
# summation, a few float32 ulps on values of order 1 (seen: 1 ulp on an AMD EPYC).
LAYOUT_ATOL = 64 * 2.0**-24


def assert_same_epis(a, b, same_layout=True):
    """Equal episodes; with ``same_layout=False`` the a_is floats within LAYOUT_ATOL."""
    assert len(a) == len(b)
    for ea, eb in zip(a, b):
        for key in ("obs", "acs", "rews", "next_obs", "terms", "truncs", "dones"):
            assert ea[key].dtype == eb[key].dtype
            np.testing.assert_array_equal(ea[key], eb[key])
        assert ea["a_is"].keys() == eb["a_is"].keys()
        for key in ea["a_is"]:
            if same_layout:
                np.testing.assert_array_equal(ea["a_is"][key], eb["a_is"][key])
            else:
                np.testing.assert_allclose(
                    ea["a_is"][key], eb["a_is"][key], rtol=0, atol=LAYOUT_ATOL
                )


def assert_whole(epis):
    for epi in epis:
        assert epi["dones"][-1] and not epi["dones"][:-1].any()


def _start_local_ray():
    ray.init(
        address="local",
        num_cpus=4,
        resources={"node1": 2},
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
    )


@pytest.fixture(scope="module")
def _ray_module():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def local_ray(_ray_module):
    """This module's local Ray instance (started again after a cluster test)."""
    if not ray.is_initialized():
        _start_local_ray()
    yield


@pytest.fixture
def cluster(_ray_module):
    """A two-node cluster on this machine: a head with 2 CPUs (and a custom resource
    ``head``, to pin things there) and a node with 1; node death noticed within about a
    second and a half."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    system_config = {
        "health_check_initial_delay_ms": 0,
        "health_check_period_ms": 500,
        "health_check_failure_threshold": 3,
    }
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"head": 1}, "_system_config": system_config},
    )
    forget_ray_address(c.address)
    try:
        c.add_node(num_cpus=1)
        ray.init(address=c.address, log_to_driver=False, logging_level="warning")
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def test_ray_backend_same_episodes_as_processes(local_ray):
    """Same seed, N and M: the Ray actors and the worker processes return identical
    episodes, stochastic and deterministic (a Gaussian policy: float actions, compared to
    the bit; the categorical policy's parity is in the cluster test)."""
    for env, make_pol in ((GymEnv("Pendulum-v1", max_episode_steps=30), gaussian_pol),):
        pol = make_pol(env)
        epis = {}
        for backend in ("process", "ray"):
            with EpiSampler(env, pol, num_parallel=2, num_envs=2, seed=3, backend=backend) as s:
                epis[backend] = s.sample(pol, max_steps=300)
                epis[backend] += s.sample(pol, max_epis=5, deterministic=True)
                epis[backend] += s.sample(pol, max_epis=3, max_steps=50)
        assert_same_epis(epis["process"], epis["ray"])
        assert_whole(epis["ray"])
        assert all(e["obs"].flags.writeable for e in epis["ray"])
    assert ray.is_initialized()  # the user's Ray (this module's) is left running


class WarningEnv(SlowEnv):
    def reset(self, *, seed=None, options=None):
        warnings.warn("a note from the environment", UserWarning, stacklevel=2)
        return super().reset(seed=seed, options=options)


def test_an_actors_warnings_reach_the_caller(local_ray):
    """Raised again in the driver, naming the actor (Ray does not forward an actor's output
    to a driver whose Ray machina started: the default episode cap's warning was lost)."""
    pol = categorical_pol(SlowEnv())
    with EpiSampler(WarningEnv, pol, num_parallel=2, seed=0, backend="ray") as s:
        with pytest.warns(UserWarning, match=r"^ray sampler actor 1 .*: a note from the env"):
            s.sample(pol, max_epis=2)


def test_env_error_names_slot_seed_and_node(local_ray):
    """An env that raises: the engine's message (slot, seed, step, the original error, as in
    this process and in worker processes), after the actor's description naming its node;
    the original exception is the cause, and the sampler stays usable."""
    env_fn = lambda: SlowEnv(fail_at=3, fail_seed=8)  # noqa: E731
    pol = categorical_pol(SlowEnv())
    with EpiSampler(env_fn, pol, seed=8) as s, pytest.raises(RuntimeError) as local:
        s.sample(pol, max_epis=2)
    with EpiSampler(env_fn, pol, num_parallel=2, seed=7, backend="ray") as s:
        for _ in range(2):  # raises again, but answers
            with pytest.raises(RuntimeError) as err:
                s.sample(pol, max_epis=2)
            assert isinstance(err.value.__cause__, ValueError)
    message = str(err.value)
    assert (
        str(local.value) == "environment 0 (seed 8) raised ValueError: boom at step 3 during step 3"
    )
    assert message.split("): ", 1)[1] == str(local.value).replace("environment 0", "environment 1")
    address = ray.nodes()[0]["NodeManagerAddress"]  # this machine's (Ray avoids 127.0.0.1)
    assert message.startswith(f"ray sampler actor 1 (node {address} id ")
    assert "env slots [1], seeds [8]" in message


def test_actor_killed_mid_sample_is_replaced(local_ray):
    """SIGKILL to an actor's process during sample: its share is re-run on a replacement,
    the call returns exactly max_epis whole episodes, and the next call works."""
    env_fn = lambda: SlowEnv(length=5, delay=0.01)  # noqa: E731
    pol = categorical_pol(SlowEnv())
    with EpiSampler(env_fn, pol, num_parallel=2, num_envs=2, seed=0, backend="ray") as s:
        pool = s._pool
        pid = pool.slots[0].where["pid"]
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            with pytest.warns(
                RuntimeWarning, match=r"ray sampler actor 0 .* was lost .*: replaced"
            ):
                epis = s.sample(pol, max_epis=80)  # 20 episodes of 5 steps per slot: >= 1 s
        finally:
            killer.cancel()
        assert len(epis) == 80 and [len(e["rews"]) for e in epis] == [5] * 80
        assert_whole(epis)
        assert pool.slots[0].restarts == 1 and pool.slots[0].where["pid"] != pid
        assert len(s.sample(pol, max_epis=4)) == 4
        # killed between calls: state_dict and load_state_dict replace it too (they raised
        # Ray's ActorDiedError until a sample call did)
        state = s.state_dict()
        for call in (s.state_dict, lambda: s.load_state_dict(state)):
            os.kill(pool.slots[1].where["pid"], signal.SIGKILL)
            with pytest.warns(RuntimeWarning, match=r"ray sampler actor 1 .* was lost"):
                call()
        assert pool.slots[1].restarts == 0  # the loaded state's count
        assert len(s.sample(pol, max_epis=4)) == 4


def test_an_address_of_another_cluster_is_named_as_unused(local_ray):
    """Ray is already initialised in this process (one process, one cluster): an address
    of another cluster is not used, and the warning says so (it was ignored silently)."""
    from machina.samplers import _ray_backend

    pol = categorical_pol(SlowEnv())
    with pytest.warns(RuntimeWarning, match=r"address='127.0.0.1:1' is not used: Ray is") as rec:
        s = EpiSampler(SlowEnv, pol, seed=0, backend="ray", address="127.0.0.1:1")
    with s:
        assert rec[0].filename == __file__  # the user's line
        assert len(s.sample(pol, max_epis=1)) == 1
    current = ray.get_runtime_context().gcs_address
    port = current.rpartition(":")[2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own address, by any name: no warning
        for address in (current, f"127.0.0.1:{port}", f"localhost:{port}"):
            assert _ray_backend._same_address(address, current)
        EpiSampler(SlowEnv, pol, seed=0, backend="ray", address=f"localhost:{port}").close()


def test_hanging_actor_times_out(local_ray):
    """An env that sleeps for an hour on a step: with timeout=2 the actor is treated as lost
    (killed; max_retries=0: no replacement within the call) and the call raises, naming the
    actor, in seconds, not an hour. (Replacement itself: the kill and node tests.)"""
    env_fn = lambda: SlowEnv(length=5, hang_at=2)  # noqa: E731
    pol = categorical_pol(SlowEnv())
    with EpiSampler(env_fn, pol, seed=0, backend="ray", timeout=2, max_retries=0) as s:
        with pytest.raises(RuntimeError, match=r"ray sampler actor 0 .* did not answer within 2"):
            s.sample(pol, max_epis=1)
        assert s._pool.slots[0].actor is None  # killed, replaced at the next call


def test_stuck_actor_without_timeout_is_replaced(local_ray, monkeypatch, tmp_path):
    """No timeout: an actor whose environment makes no step for _STALL_TIMEOUT seconds
    (shortened here from 300) is lost, replaced, and its share re-run: the call returns
    whole episodes instead of waiting an hour."""
    from machina.samplers import _ray_backend

    monkeypatch.setattr(_ray_backend, "_STALL_TIMEOUT", 4.0)
    monkeypatch.setattr(_ray_backend, "_PROBE_INTERVAL", 0.5)
    flag = str(tmp_path / "hung")
    env_fn = lambda: SlowEnv(length=5, hang_at=2, hang_flag=flag)  # noqa: E731
    pol = categorical_pol(SlowEnv())
    with EpiSampler(env_fn, pol, seed=0, backend="ray") as s:
        epis = s.sample(pol, max_epis=3)
        assert os.path.exists(flag) and s._pool.last_stats["replaced"] == 1
        assert [len(e["rews"]) for e in epis] == [5] * 3
        assert_whole(epis)


def test_more_actors_than_cpus_warn_at_once_and_fail_naming_the_resources(local_ray, monkeypatch):
    """The user's Ray has 4 CPUs; 5 actors asking one each: a warning at once (the fifth
    cannot be placed unless the cluster grows), then at the start timeout (300 s, shortened
    here) an error with the free resources. The placed actors are stopped (their 4 CPUs
    free again), and the instance serves the next sampler."""
    from machina.samplers import _ray_backend

    monkeypatch.setattr(_ray_backend, "_START_TIMEOUT", 3.0)
    pol = categorical_pol(SlowEnv())
    with (
        pytest.warns(RuntimeWarning, match=r"5 actors asking num_cpus=1 each need 5 CPUs; the "
                     r"Ray cluster has 4 in all\..*num_cpus=0"),
        pytest.raises(RuntimeError, match=r"not placed and started within 3 s.*free resources"),
    ):  # fmt: skip
        EpiSampler(SlowEnv, pol, num_parallel=5, seed=0, backend="ray")
    monkeypatch.undo()
    deadline = time.monotonic() + 120  # Ray frees the killed actors' CPUs lazily
    while ray.available_resources().get("CPU", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    # all 4 free: room for as many one-CPU actors as were placed (which a sampler of 4
    # checked by starting them, 4 more actor processes)
    assert ray.available_resources().get("CPU", 0) == 4, ray.available_resources()
    with EpiSampler(SlowEnv, pol, seed=0, backend="ray") as s:
        assert len(s.sample(pol, max_epis=4)) == 4


def test_stopped_actor_without_timeout_is_replaced(local_ray, monkeypatch):
    """No timeout: an actor process stopped (SIGSTOP) mid-sample answers no probe; after
    _STALL_TIMEOUT seconds (shortened) it is killed and replaced, and the call completes."""
    from machina.samplers import _ray_backend

    monkeypatch.setattr(_ray_backend, "_STALL_TIMEOUT", 4.0)
    monkeypatch.setattr(_ray_backend, "_PROBE_INTERVAL", 0.5)
    env_fn = lambda: SlowEnv(length=5, delay=0.05)  # noqa: E731
    pol = categorical_pol(SlowEnv())
    with EpiSampler(env_fn, pol, seed=0, backend="ray") as s:
        pid = s._pool.slots[0].where["pid"]
        stopper = threading.Timer(0.5, os.kill, (pid, signal.SIGSTOP))
        stopper.start()
        try:
            epis = s.sample(pol, max_epis=20)
        finally:
            stopper.cancel()
        assert s._pool.last_stats["replaced"] == 1 and s._pool.slots[0].where["pid"] != pid
        assert [len(e["rews"]) for e in epis] == [5] * 20
        assert_whole(epis)


def test_without_ray_the_error_names_the_install_command():
    """ray missing (simulated in a fresh interpreter): backend="ray" raises ImportError
    naming pip install -e ".[ray]"; the process backend is unaffected."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None
        from machina.envs import GymEnv
        from machina.samplers import EpiSampler
        env = GymEnv("CartPole-v1")
        try:
            EpiSampler(env, None, backend="ray")
        except ImportError as exc:
            print(exc)
        EpiSampler(env, None).close()
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert 'pip install -e ".[ray]"' in out.stdout


def test_original_raysampler_api(local_ray):
    """raysampler.EpiSampler(env, pol, num_parallel, prepro, seed, worker_cls, node_info):
    set_pol_state loads weights that the next sample acts with (the same episodes as an
    EpiSampler with those weights), sample(pol=...) too, node_info reserves resources."""
    env = GymEnv("CartPole-v1", max_episode_steps=30)
    pol = categorical_pol(env)
    other = categorical_pol(env)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-2.0)
    sampler = raysampler.EpiSampler(env, pol, num_parallel=2, seed=4, node_info={"node1": 1})
    try:
        sampler.set_pol_state(other.state_dict())
        epis = sampler.sample(max_epis=4, deterministic=True)
        # deterministic: the same episodes for any layout of the same slots (2 x 1 here)
        with EpiSampler(env, other, num_envs=2, seed=4) as ref:
            assert_same_epis(
                epis, ref.sample(other, max_epis=4, deterministic=True), same_layout=False
            )
        assert len(sampler.sample(pol, max_steps=50)) >= 2
    finally:
        sampler.close()
    with pytest.raises(ValueError, match="worker_cls"):
        raysampler.EpiSampler(env, pol, num_parallel=2, worker_cls=object)


def test_distributed_epi_sampler_on_ray(local_ray):
    """DistributedEpiSampler(world_size, rank=-1, env, pol, num_parallel, prepro, seed): the
    master samples on Ray; a rank >= 0 warns that nodes join with ray start."""
    env = GymEnv("Pendulum-v1", max_episode_steps=20)
    pol = gaussian_pol(env)
    with DistributedEpiSampler(2, env=env, pol=pol, num_parallel=2, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=4)
        assert sampler.backend == "ray"  # an initialised Ray is the cluster joined
    assert len(epis) == 4
    assert_whole(epis)
    with pytest.warns(UserWarning, match="ray start"):
        node = DistributedEpiSampler(2, rank=0)
    with pytest.raises(RuntimeError, match="not the master"):
        node.sample(pol, max_epis=1)


def test_bad_backend_arguments():
    env = GymEnv("CartPole-v1")
    with pytest.raises(ValueError, match="backend: expected one of"):
        EpiSampler(env, None, backend="dask")
    with pytest.raises(ValueError, match='address: only for backend="ray"'):
        EpiSampler(env, None, address="auto")
    # the process backend has no retries: a value for them is refused, not ignored
    with pytest.raises(ValueError, match='max_retries: only for backend="ray", given 5'):
        EpiSampler(env, None, max_retries=5)
    EpiSampler(env, None, max_retries=2).close()  # the default, as 0.x-style calls pass it
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_retries: expected a non-negative integer"):
            EpiSampler(env, None, backend="ray", max_retries=bad)
    with pytest.raises(ValueError, match="timeout: expected a positive number"):
        EpiSampler(env, None, backend="ray", timeout=-1)


def test_embedded_ray_shared_and_shut_down_by_the_last_close(_ray_module):
    """No Ray initialised: the first sampler starts a local instance sized for its actors
    (one CPU each, one per core), a second one uses it: its actors find no free CPU and
    reserve none (they share the cores, as process workers would) instead of waiting;
    closing the first leaves Ray running for the second, closing the last shuts it down.
    machina 0.x's custom-worker sampler shares it the same way, in either order: joining an
    EpiSampler's instance, and starting the instance that an EpiSampler then joins."""
    if ray.is_initialized():
        ray.shutdown()
    env = GymEnv("CartPole-v1", max_episode_steps=20)
    pol = categorical_pol(env)
    cores = os.cpu_count() or 1

    def original():
        return raysampler.EpiSampler(env, pol, 1, worker_cls=raysampler.DefaultSampleWorker)

    first = EpiSampler(env, pol, num_parallel=cores, seed=0, backend="ray")
    second = EpiSampler(env, pol, num_parallel=cores, seed=0, backend="ray")
    # a 0.x sampler opened beside them: the EpiSamplers' closes (one of them shut Ray down
    # under the other sampler's actors) leave the instance running for it
    samplers = [first, second, original()]
    try:
        assert ray.is_initialized()
        assert first._pool._options["num_cpus"] == 1 and second._pool._options["num_cpus"] == 0
        assert len(first.sample(pol, max_epis=2)) == 2
        first.close()
        assert len(second.sample(pol, max_epis=2)) == 2
        second.close()
        assert len(samplers[2].sample(pol, max_epis=2)) == 2
        samplers[2].close()
        assert not ray.is_initialized()
        # the other way round: a 0.x sampler starts the instance, an EpiSampler joins it,
        # and the 0.x one's close (it shut Ray down under the other's) leaves it running
        samplers += [original(), EpiSampler(env, pol, num_parallel=1, seed=0, backend="ray")]
        samplers[3].close()
        assert len(samplers[4].sample(pol, max_epis=2)) == 2
        samplers[4].close()
        assert not ray.is_initialized()
    finally:
        for sampler in samplers:
            sampler.close()


def _reserve_one_head_cpu():
    """A placement group holding one of the head's 2 CPUs (no process is started): each
    node then has exactly one CPU free, so two 1-CPU actors can only go one per node.
    SPREAD alone is best effort: on a loaded machine it put both on the head."""
    from ray.util import placement_group

    group = placement_group([{"CPU": 1, "head": 1}])
    ray.get(group.ready(), timeout=60)
    return group


def test_two_node_cluster_then_node_removed_mid_sample(cluster):
    """A simulated two-node cluster: the actors spread over both nodes (the same
    deterministic episodes as one process stepping all slots); then the node of one actor
    is removed during sample: its share is re-run on a replacement on the surviving node and
    the call returns exactly max_epis whole episodes. (Last in the module: it stops the
    module's local instance.)"""
    env = GymEnv("CartPole-v1", max_episode_steps=30)
    pol = categorical_pol(env)
    with EpiSampler(env, pol, seed=1, num_envs=4) as local:
        ref = local.sample(pol, max_epis=6, deterministic=True)
    env_fn = lambda: SlowEnv(length=5, delay=0.03)  # noqa: E731
    reserved = _reserve_one_head_cpu()  # one actor per node, whatever the load
    with EpiSampler(env, pol, num_parallel=2, num_envs=2, seed=1, backend="ray", timeout=60) as s:
        pool = s._pool
        assert len(set(pool.nodes())) == 2
        assert_same_epis(s.sample(pol, max_epis=6, deterministic=True), ref, same_layout=False)
    assert ray.is_initialized()  # connected by the user: not shut down by close()

    slow_pol = categorical_pol(SlowEnv())
    head_id = ray.get_runtime_context().get_node_id()
    worker_node = next(iter(cluster.worker_nodes))
    # Still one free CPU per node: the new actors wait for the first sampler's (killed
    # asynchronously) to free theirs, and then can only go one per node.
    with EpiSampler(env_fn, slow_pol, num_parallel=2, seed=0, backend="ray", timeout=60) as s:
        pool = s._pool
        lost = [slot for slot in pool.slots if slot.where["node"] != head_id]
        assert len(lost) == 1 and lost[0].where["node"] == worker_node.node_id
        # the head's second CPU, for the replacement of the actor on the removed node
        ray.util.remove_placement_group(reserved)
        remover = threading.Timer(0.5, cluster.remove_node, (worker_node,))
        remover.start()
        try:
            # 20 episodes of 5 steps per actor: >= 3 s, as a node's removal (a graceful
            # raylet stop) can take a second or more
            epis = s.sample(slow_pol, max_epis=40)
        finally:
            remover.join()
        assert len(epis) == 40 and [len(e["rews"]) for e in epis] == [5] * 40
        assert_whole(epis)
        assert lost[0].restarts == 1 and lost[0].where["node"] == head_id
