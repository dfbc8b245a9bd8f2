"""Ray actors as the transport of ``EpiSampler(backend="ray")``: start, talk, watch, replace.

Each actor holds one ``BatchEngine`` (the same engine as a worker process) over ``num_envs``
slots. Per ``sample``: the ``SampleTask`` (policy weights included) is pickled once and put
once into the object store; every actor gets a reference to it and its own ``Quotas``, and
sends back one message, its episodes as packed columns (``pack_episodes``), pickled.

Faults: an actor that dies (killed, out of memory, its node removed) or does not answer within
``timeout`` is killed and replaced by a new actor (not seeded again, a new RNG stream), which
re-runs the lost share; after ``max_retries`` replacements of one share in one call the call
raises. An environment that raises is an error at once (a replacement would raise again),
naming the slot, its seed and the node, as the process backend does.

``ray`` is imported lazily (:func:`machina.utils.import_ray`): it is an optional dependency.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

from machina.samplers._buffers import unpack_episodes
from machina.samplers._protocol import error_message, reemit_warnings, run_recording_warnings
from machina.samplers._setup import engine_rng_seed, slot_seeds
from machina.samplers._task import EngineSpec, Episode, Quotas, SampleTask, SamplingAborted
from machina.utils.ray_trainers import import_ray

# How often the driver wakes up while it waits for the actors (to check deadlines), seconds.
_POLL_INTERVAL = 0.5
# An actor that is not placed and has not built its environments by then is lost.
_START_TIMEOUT = 300.0
# Without a ``timeout``, an actor still running a task is asked every _PROBE_INTERVAL
# seconds when it last stepped; one that made no step, or did not answer, for
# _STALL_TIMEOUT seconds (a stuck environment, a stopped process) is lost: never a hang,
# and no limit on a long but progressing task.
_PROBE_INTERVAL = 10.0
_STALL_TIMEOUT = 300.0
# The Ray connection machina made (a local instance it started, or a connection to
# ``address``): shared by every sampler that finds it, shut down when the last one closes.
# ``local_cpus``: the CPUs of the local instance machina started (0 when it connected to
# an address); ``reserved``: what its open samplers' actors reserve of them.
_OWNED: dict[str, float] = {"users": 0, "local_cpus": 0.0, "reserved": 0.0}


def _runtime_env(user_env: dict[str, Any] | None) -> dict[str, Any]:
    """The actors' runtime environment: the user's, plus this machina first on PYTHONPATH
    (actors on this machine import the driver's copy even when it is not installed; on
    other nodes the path does not exist and their installed machina is used) and one thread
    per process for OpenMP (the actors are the parallelism)."""
    env = dict(user_env or {})
    env_vars = dict(env.get("env_vars") or {})
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rest = env_vars.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    paths = [package_root] + [p for p in rest.split(os.pathsep) if p and p != package_root]
    env_vars["PYTHONPATH"] = os.pathsep.join(paths)
    env_vars.setdefault("OMP_NUM_THREADS", "1")
    env["env_vars"] = env_vars
    return env


class EngineActor:
    """The actor class (made remote by ``RayPool``): one engine, one task at a time.

    Runs with two threads (``max_concurrency=2``) so that ``abort`` can stop a running
    ``sample`` (through the engine's ``should_stop``); a lock keeps samples one at a time.
    """

    def __init__(self, sys_path: list[str], env_fn_bytes: bytes, spec: EngineSpec) -> None:
        # Same import path as the driver, so objects pickled by reference (classes of the
        # user's modules, test modules) load here too.
        sys.path[:] = sys_path + [p for p in sys.path if p not in sys_path]
        import torch

        from machina.samplers.engine import BatchEngine

        # One thread per actor: the actors are the parallelism.
        torch.set_num_threads(1)
        self.spec = spec
        self.engine = None
        self.init_error = None
        try:
            self.engine = BatchEngine.from_spec(cloudpickle.loads(env_fn_bytes), spec)
        except Exception as exc:
            self.init_error = error_message("init", exc)
        self.lock = threading.Lock()
        self.abort_id: Any = None
        # time.monotonic() of the running task's last step; None between tasks
        self.last_step: float | None = None

    def ready(self) -> tuple:
        """``("ready", spaces, where)`` or the error that building the engine raised."""
        import ray

        where = {
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        if self.init_error is not None:
            return (*self.init_error, where)
        return ("ready", (self.engine.observation_space, self.engine.action_space), where)

    def abort(self, task_id: Any) -> None:
        self.abort_id = task_id

    def idle_s(self) -> float | None:
        """Seconds since the running task's last step (None: no task running)."""
        last = self.last_step
        return None if last is None else time.monotonic() - last

    def sample(self, task_id: Any, task_bytes: bytes, quotas: Quotas) -> Any:
        """The episodes packed and pickled (one message), or an ("error", ...) tuple."""

        def should_stop() -> bool:
            self.last_step = time.monotonic()
            return self.abort_id == task_id

        with self.lock:
            if self.abort_id == task_id:
                return ("aborted", task_id)
            self.last_step = time.monotonic()
            try:
                task = cloudpickle.loads(task_bytes)
                packed = run_recording_warnings(
                    lambda: self.engine.run_task(task, quotas, should_stop=should_stop)
                )
                # Pickled here: the driver gets writable arrays (not read-only views of the
                # object store), in one buffer whatever the number of episodes.
                return cloudpickle.dumps(("epis", task_id, packed))
            except SamplingAborted:
                return ("aborted", task_id)
            except Exception as exc:
                return error_message(task_id, exc)
            finally:
                self.last_step = None

    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            return self.engine.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.engine.load_state_dict(state)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def _warn_if_other_address(ray: Any, address: str | None) -> None:
    """Warn that ``address`` is not used: this process is connected to a Ray already, and
    Ray cannot connect one process to two clusters."""
    if not address or address in ("auto", "local") or address.startswith("ray://"):
        return
    current = ray.get_runtime_context().gcs_address
    if not _same_address(address, current):
        warnings.warn(
            f"address={address!r} is not used: Ray is already initialised in this process "
            f"(the cluster at {current}), and the actors start there; call ray.shutdown() "
            "first to connect elsewhere",
            RuntimeWarning,
            stacklevel=5,
        )


def _same_address(given: str, current: str) -> bool:
    """Whether ``given`` ("host:port") names the cluster at ``current`` ("ip:port"): the same
    port, and a host resolving to its IP or to this machine's loopback."""
    if given == current:
        return True
    host, _, port = given.rpartition(":")
    current_host, _, current_port = current.rpartition(":")
    if port != current_port:
        return False
    try:
        ip = socket.gethostbyname(host)
    except (OSError, UnicodeError):
        return False
    return ip == current_host or ip.startswith("127.")


def join_owned_ray() -> bool:
    """One more user of the Ray instance a machina sampler started, when one runs: True
    (call :func:`release_owned_ray` at close); False for an instance of the user's own."""
    if _OWNED["users"] > 0:
        _OWNED["users"] += 1
        return True
    return False


def own_started_ray(local_cpus: float) -> None:
    """Note that the caller just started Ray (``local_cpus`` CPUs): it is its first user."""
    _OWNED.update(users=1, local_cpus=float(local_cpus), reserved=0.0)


def release_owned_ray(ray: Any, reserved: float = 0.0) -> None:
    """One user of machina's Ray instance fewer (its ``reserved`` CPUs back); the last shuts
    it down, so that no sampler's close stops Ray under another's actors."""
    _OWNED["users"] -= 1
    _OWNED["reserved"] -= reserved
    if _OWNED["users"] <= 0:
        _OWNED.update(users=0, local_cpus=0.0, reserved=0.0)
        if ray.is_initialized():
            ray.shutdown()


class _Slot:
    """One share of the slots (engine ``index``) and the actor currently serving it."""

    def __init__(self, index: int, slot_ids: list[int], seeds: list[int | None]) -> None:
        self.index = index
        self.slot_ids = slot_ids
        self.seeds = seeds
        self.actor: Any = None
        self.where: dict[str, Any] = {}
        self.sampled = False  # a task was sent: the slots' seeded first resets have happened
        self.restarts = 0

    def describe(self) -> str:
        node = self.where.get("node", "?")
        return (
            f"ray sampler actor {self.index} (node {self.where.get('ip', '?')} "
            f"id {node[:12]}, pid {self.where.get('pid')}, env slots {self.slot_ids}, "
            f"seeds {self.seeds})"
        )


class RayPool:
    """``num_actors`` Ray actors, each running a ``BatchEngine`` over ``num_envs`` slots.

    Parameters
    ----------
    env_fn : callable
        Zero-argument environment factory; cloudpickled once, put once into the object store.
    num_actors, num_envs : int
        Actor ``w`` owns global slots ``w * num_envs ... (w + 1) * num_envs - 1``.
    seed : int or None
        Slot ``i`` first resets with ``seed + i``.
    address : str or None
        Ray cluster to connect to; None: ``RAY_ADDRESS``, else a Ray already initialised in
        this process, else a new local instance (quiet, no dashboard), shut down by ``close``.
    num_cpus, num_gpus : float
        Resources each actor reserves.
    resources : dict or None
        Custom resources each actor reserves (e.g. ``{"node1": 1}``).
    ray_remote_args : dict or None
        Further ``ActorClass.options`` (override the above and ``scheduling_strategy``,
        default ``"SPREAD"``: actors spread over the nodes).
    per_actor_resources : sequence of dict, optional
        Extra custom resources per actor (what ``machina.samplers.raysampler``'s
        ``node_info`` becomes).
    timeout : float or None
        Seconds an actor may take to answer one ``sample`` before it is treated as lost.
    max_retries : int
        Replacements of one share within one ``sample`` call before the call raises.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        num_actors: int,
        num_envs: int,
        seed: int | None,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        resources: dict[str, float] | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        per_actor_resources: Sequence[dict[str, float]] | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
    ) -> None:
        ray = import_ray()
        self.ray = ray
        self.seed = seed
        self.timeout = timeout
        self.max_retries = int(max_retries)
        self.started_ray = False
        self._closed = False
        self._task_ids = 0
        #: the driver's side of the last ``sample``: ``broadcast_s`` (pickling and putting
        #: the task), ``task_bytes``, ``submit_s`` (sending the calls), ``gather_s``
        #: (unpickling and unpacking the actors' messages), ``result_bytes`` (their total
        #: size), ``replaced`` (actors replaced).
        self.last_stats: dict[str, float] = {}
        self._reserved = 0.0
        # what the actors reserve (ray_remote_args override num_cpus), for the accounting
        asked = (ray_remote_args or {}).get("num_cpus", num_cpus)
        num_cpus = self._init_ray(address, num_actors, max(float(asked), 0.0))
        try:
            if not _OWNED["local_cpus"]:  # a cluster or the user's instance: may be short
                self._warn_if_short(num_actors, num_cpus)
            self._env_fn_ref = ray.put(cloudpickle.dumps(env_fn))
            self._actor_cls = ray.remote(EngineActor)
            options = {
                "num_cpus": num_cpus,
                "num_gpus": num_gpus,
                "max_concurrency": 2,
                "max_restarts": 0,
                "scheduling_strategy": "SPREAD",
            }
            if resources:
                options["resources"] = dict(resources)
            options.update(ray_remote_args or {})
            options["num_cpus"] = num_cpus
            options["runtime_env"] = _runtime_env(options.get("runtime_env"))
            self._options = options
            self._per_actor = list(per_actor_resources or [])
            self.slots = [
                _Slot(w, ids, slot_seeds(seed, ids))
                for w in range(num_actors)
                for ids in [list(range(w * num_envs, (w + 1) * num_envs))]
            ]
            spaces = self._start(self.slots)
            self.observation_space, self.action_space = spaces[0]
        except BaseException:
            self.close()
            raise

    def _init_ray(self, address: str | None, num_actors: int, num_cpus: float) -> float:
        """Connect to (or start) Ray; the CPUs each actor is to reserve."""
        ray = self.ray
        cpus_needed = num_actors * num_cpus
        if ray.is_initialized():
            _warn_if_other_address(ray, address)
            if _OWNED["users"] > 0:  # machina's own: one more sampler on it
                _OWNED["users"] += 1
                self.started_ray = True
                free = _OWNED["local_cpus"] - _OWNED["reserved"]
                if _OWNED["local_cpus"] and cpus_needed > free + 1e-9:
                    # The local instance cannot grow and its CPUs are only scheduling
                    # tokens: these actors share the cores, as process workers would,
                    # instead of waiting for CPUs that the other samplers hold.
                    num_cpus = 0.0
                self._reserve(num_actors * num_cpus)
            return num_cpus  # else the user's own Ray: use it, never shut it down
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            # "local": a new instance even when another was started with `ray start` on
            # this machine (ray.init() alone would attach to it).
            local_cpus = max(os.cpu_count() or 1, math.ceil(cpus_needed))
            ray.init(
                address="local",
                num_cpus=local_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            _OWNED["local_cpus"] = float(local_cpus)
        _OWNED["users"] = 1
        self.started_ray = True
        self._reserve(cpus_needed)
        return num_cpus

    def _warn_if_short(self, num_actors: int, num_cpus: float) -> None:
        """Warn at once when the cluster has fewer CPUs in all than the actors ask for: the
        last ones would wait, silently, until the start timeout (unless the cluster grows).
        Against the total, not the free CPUs: those of a sampler just closed come back
        lazily, and a short wait for them is no reason to warn."""
        total = float(self.ray.cluster_resources().get("CPU", 0.0))
        if num_actors * num_cpus <= total + 1e-9:
            return
        warnings.warn(
            f"ray sampler: {num_actors} actors asking num_cpus={num_cpus:g} each need "
            f"{num_actors * num_cpus:g} CPUs; the Ray cluster has {total:g} in all. Unless "
            f"it grows, the actors it cannot place wait (up to {_START_TIMEOUT:.0f} s) and "
            "the sampler then fails: ask for fewer (num_parallel), less per actor "
            "(num_cpus=0 lets actors share cores, as worker processes do), or start Ray "
            "with more CPUs",
            RuntimeWarning,
            stacklevel=2,
        )

    def _reserve(self, cpus: float) -> None:
        self._reserved = cpus
        _OWNED["reserved"] += cpus

    def _new_actor(self, slot: _Slot) -> Any:
        options = dict(self._options)
        if slot.index < len(self._per_actor) and self._per_actor[slot.index]:
            options["resources"] = {
                **options.get("resources", {}),
                **self._per_actor[slot.index],
            }
        spec = EngineSpec(
            index=slot.index,
            slot_ids=slot.slot_ids,
            seed=self.seed,
            rng_seed=engine_rng_seed(self.seed, slot.index, slot.restarts),
            # A replacement actor must not replay the seeded first resets.
            seeded=[slot.sampled] * len(slot.slot_ids),
        )
        # Absolute paths: the actor's working directory is not the driver's.
        sys_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        return self._actor_cls.options(**options).remote(sys_path, self._env_fn_ref, spec)

    def _start(self, slots: Sequence[_Slot]) -> list[tuple[Any, Any]]:
        """Start actors for ``slots`` (all at once) and wait until each built its engine."""
        ray = self.ray
        for slot in slots:
            slot.actor = self._new_actor(slot)
        refs = {slot.actor.ready.remote(): slot for slot in slots}
        limit = _START_TIMEOUT if self.timeout is None else max(self.timeout, 60.0)
        deadline = time.monotonic() + limit
        spaces = {}
        while refs:
            left = deadline - time.monotonic()
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=max(min(left, 5.0), 0.0))
            for ref in ready:
                slot = refs.pop(ref)
                try:
                    msg = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    self._kill(slot)
                    raise RuntimeError(f"{slot.describe()} failed to start: {exc}") from exc
                slot.where = msg[-1]
                slot.where["ip"] = slot.where["host"]
                if msg[0] == "error":
                    error = self._error(slot, msg[:-1])
                    self._kill(slot)
                    raise error
                spaces[slot.index] = msg[1]
            if refs and time.monotonic() > deadline:
                slot = next(iter(refs.values()))
                for late in refs.values():
                    self._kill(late)
                raise RuntimeError(
                    f"{slot.describe()} was not placed and started within {limit:.0f} "
                    f"s; resources asked per actor: {self._options}; the cluster's free "
                    f"resources: {self.ray.available_resources()}"
                )
        # The nodes' addresses as the cluster knows them (what `ray start` was given).
        addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
        for slot in slots:
            slot.where["ip"] = addresses.get(slot.where["node"], slot.where["host"])
        return [spaces[slot.index] for slot in slots]

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is not None:
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
            slot.actor = None

    def sample(self, task: SampleTask, quotas: Sequence[Quotas]) -> list[Episode]:
        """Run one task on every actor and return all episodes in actor (slot) order."""
        ray = self.ray
        if self._closed:
            raise RuntimeError("this EpiSampler's Ray actors are closed")
        dead = [slot for slot in self.slots if slot.actor is None]
        if dead:  # lost in an earlier call that raised
            self._start(dead)
        self._task_ids += 1
        task_id = self._task_ids
        # Pickled and put once, whatever the number of actors: every actor gets a reference.
        start = time.perf_counter()
        task_bytes = cloudpickle.dumps(task)
        task_ref = ray.put(task_bytes)
        stats = {"broadcast_s": time.perf_counter() - start, "task_bytes": len(task_bytes)}
        stats.update(result_bytes=0, gather_s=0.0, replaced=0)
        pending: dict[Any, tuple[_Slot, float]] = {}
        attempts = {slot.index: 0 for slot in self.slots}

        def submit(slot: _Slot) -> None:
            ref = slot.actor.sample.remote(task_id, task_ref, quotas[slot.index])
            slot.sampled = True
            deadline = math.inf if self.timeout is None else time.monotonic() + self.timeout
            pending[ref] = (slot, deadline)
            probes.pop(slot.index, None)

        probes: dict[int, tuple[Any, float]] = {}  # slot index -> (probe ref, sent at)
        next_probe = time.monotonic() + _PROBE_INTERVAL

        start = time.perf_counter()
        for slot in self.slots:
            submit(slot)
        stats["submit_s"] = time.perf_counter() - start
        results: dict[int, Any] = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=_POLL_INTERVAL)
                lost = []
                for ref in ready:
                    slot, _ = pending.pop(ref)
                    try:
                        msg = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # not the env's: ours
                        raise RuntimeError(f"{slot.describe()} failed: {exc}") from exc
                    except ray.exceptions.RayError as exc:  # the actor or its node died
                        lost.append((slot, f"was lost ({type(exc).__name__})", exc))
                        continue
                    if isinstance(msg, bytes):
                        start = time.perf_counter()
                        results[slot.index] = cloudpickle.loads(msg)[2]
                        stats["gather_s"] += time.perf_counter() - start
                        stats["result_bytes"] += len(msg)
                    elif msg[0] == "error":
                        raise self._error(slot, msg)
                    else:  # "aborted": only when the driver asked, never here
                        raise RuntimeError(f"{slot.describe()} aborted its task unasked")
                now = time.monotonic()
                for ref, (slot, deadline) in list(pending.items()):
                    if now > deadline:
                        del pending[ref]
                        lost.append((slot, f"did not answer within {self.timeout} s", None))
                if self.timeout is None and pending and now >= next_probe:
                    next_probe = now + _PROBE_INTERVAL
                    for ref, why in self._stalled(pending, probes, now):
                        lost.append((pending.pop(ref)[0], why, None))
                for slot, why, exc in lost:
                    attempts[slot.index] += 1
                    stats["replaced"] += 1
                    self._kill(slot)
                    slot.restarts += 1
                    if attempts[slot.index] > self.max_retries:
                        raise RuntimeError(
                            f"{slot.describe()} {why}, and its share was lost "
                            f"{attempts[slot.index]} times in this sample call; a new actor "
                            "replaces it at the next call"
                        ) from exc
                    # said at once: with the stall probe a lost share can cost minutes
                    warnings.warn(
                        f"{slot.describe()} {why}: replaced, its share re-run (loss "
                        f"{attempts[slot.index]} of at most {self.max_retries} in this call)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                if lost:
                    # The lost shares are re-run whole on replacements (started together):
                    # whole episodes, and the budget kept.
                    self._start([slot for slot, _, _ in lost])
                    for slot, _, _ in lost:
                        submit(slot)
        except BaseException:
            for slot, _ in pending.values():
                if slot.actor is not None:
                    try:
                        slot.actor.abort.remote(task_id)
                    except Exception:
                        pass
            raise
        start = time.perf_counter()
        for slot in self.slots:
            reemit_warnings(results[slot.index], slot.describe())
        epis = [epi for slot in self.slots for epi in unpack_episodes(results[slot.index])]
        stats["gather_s"] += time.perf_counter() - start
        self.last_stats = stats
        return epis

    def _stalled(
        self,
        pending: dict[Any, tuple[_Slot, float]],
        probes: dict[int, tuple[Any, float]],
        now: float,
    ) -> list[tuple[Any, str]]:
        """The pending tasks whose actor made no step, or did not answer a probe, for
        ``_STALL_TIMEOUT`` seconds; probes the others again."""
        ray = self.ray
        stalled = []
        for ref, (slot, _) in pending.items():
            probe = probes.pop(slot.index, None)
            if probe is not None:
                probe_ref, sent = probe
                if not ray.wait([probe_ref], timeout=0)[0]:
                    if now - sent > _STALL_TIMEOUT:
                        why = f"did not answer a liveness probe within {_STALL_TIMEOUT:.0f} s"
                        stalled.append((ref, why))
                    else:
                        probes[slot.index] = probe
                    continue
                try:
                    idle = ray.get(probe_ref)
                except ray.exceptions.RayError:
                    idle = None  # the actor died: its task's ref reports it
                if idle is not None and idle > _STALL_TIMEOUT:
                    stalled.append((ref, f"made no environment step for {idle:.0f} s"))
                    continue
            probes[slot.index] = (slot.actor.idle_s.remote(), now)
        return stalled

    def _error(self, slot: _Slot, msg: tuple) -> RuntimeError:
        """The RuntimeError for an actor's ("error", ...) reply, with the original cause."""
        _, _, message, cause_bytes, tb = msg
        cause = None
        if cause_bytes is not None:
            try:
                cause = cloudpickle.loads(cause_bytes)
            except Exception:
                cause = None
        if cause is None:
            cause = RuntimeError(tb)
        error = RuntimeError(f"{slot.describe()}: {message}")
        error.__cause__ = cause
        return error

    def _ask_all(self, call: Callable[[_Slot], Any]) -> list[Any]:
        """What every actor answers to ``call(slot)`` (an actor method's ref), in actor
        order. An actor lost since the last call (its process or node died, or it does not
        answer) is replaced, as a sample call replaces one, and asked again, once."""
        ray = self.ray
        dead = [slot for slot in self.slots if slot.actor is None]
        if dead:  # lost in an earlier call that raised
            self._start(dead)
        answers: dict[int, Any] = {}
        asked = list(self.slots)
        for attempt in range(2):
            refs = [(slot, call(slot)) for slot in asked]
            lost = []
            for slot, ref in refs:
                try:
                    answers[slot.index] = ray.get(ref, timeout=self.timeout or _START_TIMEOUT)
                except ray.exceptions.RayTaskError:
                    raise  # the call itself failed (e.g. a state of another layout)
                except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as exc:
                    if attempt:
                        self._kill(slot)
                        raise RuntimeError(
                            f"{slot.describe()} was lost again ({type(exc).__name__}); a new "
                            "actor replaces it at the next call"
                        ) from exc
                    lost.append((slot, exc))
            if not lost:
                break
            for slot, exc in lost:
                self._kill(slot)
                slot.restarts += 1
                warnings.warn(
                    f"{slot.describe()} was lost ({type(exc).__name__}): replaced",
                    RuntimeWarning,
                    stacklevel=3,
                )
            asked = [slot for slot, _ in lost]
            self._start(asked)
        return [answers[slot.index] for slot in self.slots]

    def state_dict(self) -> list[dict[str, Any]]:
        """Every actor's ``BatchEngine.state_dict``, in actor order."""
        states = self._ask_all(lambda slot: slot.actor.state_dict.remote())
        for state, slot in zip(states, self.slots):
            state["restarts"] = slot.restarts
        return states

    def load_state_dict(self, states: Sequence[dict[str, Any]]) -> None:
        """Load one engine state per actor (``state_dict``'s list)."""
        self._ask_all(lambda slot: slot.actor.load_state_dict.remote(states[slot.index]))
        for slot, state in zip(self.slots, states):
            slot.restarts = int(state.get("restarts", slot.restarts))
            slot.sampled = not any(state["needs_seed"])  # replacements must not replay seeds

    def nodes(self) -> list[str]:
        """The node id of each actor, in actor order."""
        return [slot.where.get("node", "?") for slot in self.slots]

    def close(self) -> None:
        """Stop the actors; shut Ray down if machina started (or connected) it and no other
        sampler still uses it."""
        if self._closed:
            return
        self._closed = True
        ray = self.ray
        for slot in getattr(self, "slots", []):
            self._kill(slot)
        if self.started_ray:
            release_owned_ray(ray, self._reserved)
