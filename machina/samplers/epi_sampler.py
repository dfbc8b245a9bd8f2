"""EpiSampler: whole episodes from many environments, in one process or several."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch

from machina.samplers._buffers import unpack_episodes
from machina.samplers._env_slots import dict_obs_error
from machina.samplers._original import mp_sample, one_epi
from machina.samplers._setup import (
    WithParentRegistry,
    as_env_factory,
    engine_rng_seed,
    split_quotas,
)
from machina.samplers._task import Episode, SampleTask
from machina.samplers.engine import BatchEngine
from machina.samplers.workers import WorkerPool

BACKENDS = ("process", "ray")
# EpiSampler's arguments that only the Ray backend takes, with their defaults: another value
# with backend="process" is refused (and asks DistributedEpiSampler for Ray).
RAY_ONLY_DEFAULTS: dict[str, Any] = dict(
    address=None, num_cpus=1, num_gpus=0, resources=None, ray_remote_args=None, max_retries=2
)

# 0.x's module names: its stand-in for "no limit" and its per-episode sampling functions
# (for scripts that call them; EpiSampler runs the batched engine).
LARGE_NUMBER = 100000000
__all__ = ["BACKENDS", "EpiSampler", "LARGE_NUMBER", "check_pol_spaces", "mp_sample", "one_epi"]


def _same_space(pol_space: gymnasium.Space, env_space: gymnasium.Space, bounds: bool) -> bool:
    """Whether a policy built for ``pol_space`` can act in / read ``env_space``."""
    spaces = gymnasium.spaces
    if isinstance(env_space, spaces.Box):
        if not isinstance(pol_space, spaces.Box) or pol_space.shape != env_space.shape:
            return False
        # Action bounds matter: the policy scales its [-1, 1] output to them.
        return not bounds or (
            np.array_equal(pol_space.low, env_space.low)
            and np.array_equal(pol_space.high, env_space.high)
        )
    if isinstance(env_space, spaces.Discrete):
        return (
            isinstance(pol_space, spaces.Discrete)
            and pol_space.n == env_space.n
            and pol_space.start == env_space.start
        )
    if isinstance(env_space, spaces.MultiDiscrete):
        return (
            isinstance(pol_space, spaces.MultiDiscrete)
            and np.array_equal(pol_space.nvec, env_space.nvec)
            and np.array_equal(pol_space.start, env_space.start)  # the actions' offsets
        )
    return pol_space == env_space


def check_pol_spaces(
    pol: Any,
    observation_space: gymnasium.Space,
    action_space: gymnasium.Space,
    check_obs: bool = True,
) -> None:
    """Raise ValueError naming ``pol`` when its spaces do not fit the environment's.

    A policy without ``observation_space`` / ``action_space`` attributes is not checked.
    """
    checks = [("action_space", action_space, True)]
    if check_obs:
        checks.insert(0, ("observation_space", observation_space, False))
    for name, env_space, bounds in checks:
        pol_space = getattr(pol, name, None)
        if pol_space is not None and not _same_space(pol_space, env_space, bounds):
            raise ValueError(
                f"pol.{name} does not match the environment's: expected {env_space}, "
                f"given {pol_space}"
            )


def _check_budget(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer or None, given {value!r}")
    return int(value)


def _cpu_policy(pol: torch.nn.Module) -> torch.nn.Module:
    """The policy as workers should receive it: on the CPU (they have no GPU context)."""
    tensors = list(pol.parameters()) + list(pol.buffers()) if hasattr(pol, "parameters") else []
    if all(t.device.type == "cpu" for t in tensors):
        return pol
    return copy.deepcopy(pol).cpu()


class EpiSampler:
    """Sample whole episodes with a policy from copies of one environment.

    Each process runs a batch engine that steps ``num_envs`` environments and calls the
    policy once per step on their stacked observations. ``num_parallel=1`` runs the engine
    in this process; ``num_parallel > 1`` runs one engine per worker process.

    Parameters
    ----------
    env : gymnasium.Env, GymEnv, gymnasium.vector.VectorEnv or callable
        The environment, copied once per slot (pickle round trip), or a zero-argument
        factory called once per slot (lambdas and closures work with worker processes).
        A gymnasium ``VectorEnv`` (``gymnasium.make_vec``, a ``SyncVectorEnv``, envpool's
        gymnasium environments), or a factory that makes one, is stepped as a whole, one
        ``step`` per engine step: its sub-environments are the engine's slots, with the same
        whole episodes, budgets, seeds and episode keys (``_vector_loop.py``; any gymnasium
        1.x autoreset mode). An instance runs in this process (``num_parallel=1``), is not
        copied, and is closed by ``close``; ``num_envs`` is then its size. A factory runs in
        each worker or Ray actor too, with ``num_envs`` equal to the size of what it makes
        (in this process, the default ``num_envs=1`` takes that size). Seeds: the first
        reset is ``reset(seed=seed + first slot)``, which gymnasium's ``SyncVectorEnv`` and
        ``AsyncVectorEnv`` turn into ``seed + slot`` per sub-environment, as for single
        environments.
    pol : torch.nn.Module
        A policy; its ``observation_space`` and ``action_space`` are checked against the env.
    num_parallel : int
        Number of processes that sample.
    prepro : callable, optional
        Maps one observation (*ob_shape) to what the policy sees and episodes store
        (``obs`` and ``next_obs``); sent to the workers with the policy at each ``sample``.
        With a prepro the observation space of ``pol`` is not checked.
    seed : int or None
        Environment slot ``i`` (of ``num_parallel * num_envs``) first resets with
        ``seed + i``; later resets are unseeded. The policy samples with a torch RNG per
        process seeded from ``seed`` and kept across calls. The same seed, ``num_parallel``
        and ``num_envs`` give the same episodes. None: not seeded.
    num_envs : int
        Environments per process.
    fast_inference : bool
        Act in numpy, on a copy of the weights taken at each ``sample``, when ``pol`` is a
        ``GaussianPol`` or ``CategoricalPol`` on machina's ``PolNet`` on the CPU (what
        ``make_pol`` builds without ``rnn``; the policy says so through
        ``pol.numpy_inference()``): the same distribution parameters (to float32 rounding)
        and the same draws from the same RNG, at about a third of the cost of a PyTorch
        call. Other policies (subclasses, other nets, recurrent, on a GPU) are called as they
        are. False: always call ``pol``.
    backend : {"process", "ray"}
        ``"process"``: ``num_parallel > 1`` runs worker processes on this machine.
        ``"ray"``: ``num_parallel`` Ray actors (any ``num_parallel``, 1 included), each
        stepping ``num_envs`` environments with the same engine: for the same ``seed``,
        ``num_parallel`` and ``num_envs`` the same episodes as the process backend. Needs
        ``pip install -e ".[ray]"``.
    address : str, optional
        Ray only: the cluster to connect to (``"auto"``, ``"10.0.0.1:6379"``). Default:
        ``RAY_ADDRESS`` if set, else a Ray already initialised in this process, else a new
        local instance (quiet, no dashboard) that ``close`` shuts down.
    num_cpus, num_gpus : float
        Ray only: resources each actor reserves (default 1 CPU, no GPU).
    resources : dict, optional
        Ray only: custom resources each actor reserves, e.g. ``{"sampler_node": 1}``.
    ray_remote_args : dict, optional
        Ray only: more options for the actors (``ActorClass.options``), overriding the above
        and the default ``scheduling_strategy="SPREAD"`` (actors spread over the nodes).
    timeout : float, optional
        Seconds a worker process or Ray actor may take to answer one ``sample`` (an
        environment stuck in C code, a stopped process). Ray: past it the actor is treated
        as lost (killed, replaced, its share re-run up to ``max_retries``). Processes
        (``num_parallel > 1``): the worker is killed, ``sample`` raises a RuntimeError naming
        it and its environment slots, and a new worker replaces it at the next call. None: no
        limit on the answer (a dead worker, actor or node is still noticed at once); Ray
        actors are then probed every 10 s, and one that made no environment step, or did not
        answer the probe, for 5 minutes is lost as above.
    max_retries : int
        Ray only: replacements of one actor's share within one ``sample`` before it raises.
    max_episode_steps : int, None or "auto"
        Episodes reaching this many steps are cut and marked truncated (``truncs``; they
        bootstrap), so that ``sample`` returns even when an environment never ends.
        ``"auto"`` (default): the environment's ``spec.max_episode_steps`` when it has one
        (what ``gymnasium.make`` registers, which its ``TimeLimit`` already applies), else
        10,000 (``machina.samplers._task.DEFAULT_MAX_EPISODE_STEPS``, with a warning the first
        time it cuts an episode). None: never cut (an environment that never ends then
        never returns).

    Raises
    ------
    ValueError
        When ``pol`` does not fit the environment, or an argument is out of range.
    RuntimeError
        When an environment cannot be built (with its index and seed) or a worker fails to
        start.
    """

    def __init__(
        self,
        env: gymnasium.Env | Callable[[], gymnasium.Env],
        pol: torch.nn.Module,
        num_parallel: int = 1,
        prepro: Callable[[np.ndarray], np.ndarray] | None = None,
        seed: int | None = 256,
        num_envs: int = 1,
        fast_inference: bool = True,
        backend: str = "process",
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        resources: dict[str, float] | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        max_episode_steps: int | None | str = "auto",
        _per_actor_resources: list[dict[str, float]] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, given {backend!r}")
        if backend != "ray":
            given = dict(
                address=address,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=resources,
                ray_remote_args=ray_remote_args,
                max_retries=max_retries,
            )
            for name, value in given.items():
                if value != RAY_ONLY_DEFAULTS[name]:
                    raise ValueError(
                        f'{name}: only for backend="ray", given {value!r} with backend={backend!r}'
                    )
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout: expected a positive number of seconds, given {timeout!r}")
        if timeout is not None and backend == "process" and num_parallel == 1:
            raise ValueError(
                'timeout: needs worker processes (num_parallel > 1) or backend="ray"; with '
                "num_parallel=1 the environments step in this process, which cannot be "
                f"interrupted, given timeout={timeout!r} with num_parallel=1"
            )
        for name, value, low in (
            ("num_parallel", num_parallel, 1),
            ("num_envs", num_envs, 1),
            ("max_retries", max_retries, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                what = "a positive integer" if low else "a non-negative integer"
                raise ValueError(f"{name}: expected {what}, given {value!r}")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):  # numpy's SeedSequence and gymnasium's reset(seed=) take no negative seed
            raise ValueError(f"seed: expected a non-negative integer or None, given {seed!r}")
        if max_episode_steps != "auto" and max_episode_steps is not None:
            if (
                isinstance(max_episode_steps, bool)
                or not isinstance(max_episode_steps, (int, np.integer))
                or max_episode_steps < 1
            ):
                raise ValueError(
                    'max_episode_steps: expected a positive integer, "auto" or None, given '
                    f"{max_episode_steps!r}"
                )
            max_episode_steps = int(max_episode_steps)
        if prepro is not None and not callable(prepro):
            raise ValueError(f"prepro: expected a callable or None, given {prepro!r}")
        if isinstance(env, gymnasium.vector.VectorEnv):
            if backend == "ray" or num_parallel != 1:
                raise ValueError(
                    "env: a VectorEnv instance is stepped in this process only (num_parallel=1,"
                    f' backend="process"), given num_parallel={num_parallel!r}, '
                    f"backend={backend!r}; for workers or Ray actors pass a factory that makes "
                    'one, e.g. lambda: gymnasium.make_vec("CartPole-v1", num_envs=64, '
                    'vectorization_mode="vector_entry_point")'
                )
            if num_envs not in (1, env.num_envs):
                raise ValueError(
                    f"num_envs: expected the VectorEnv's number of sub-environments "
                    f"({env.num_envs}) or the default 1, given {num_envs!r}"
                )
            num_envs = env.num_envs
        self.env = env
        self.num_parallel = int(num_parallel)
        self.num_envs = int(num_envs)
        self.prepro = prepro
        self.seed = None if seed is None else int(seed)
        if fast_inference not in (True, False):  # bool("no") would be True; 0 and 1 are fine
            raise TypeError(f"fast_inference: expected a bool, given {fast_inference!r}")
        self.fast_inference = bool(fast_inference)
        self.max_episode_steps = max_episode_steps
        self.backend = backend
        self._engine: BatchEngine | None = None
        self._pool: WorkerPool | Any = None
        self._closed = False
        # the caller's VectorEnv instance: closed by close() / the with block only, never
        # behind the caller's back (a refused constructor call, garbage collection)
        self._borrowed_env = isinstance(env, gymnasium.vector.VectorEnv)
        env_fn = as_env_factory(env)
        if backend == "ray":
            from machina.samplers._ray_backend import RayPool

            self._pool = RayPool(
                WithParentRegistry(env_fn),
                self.num_parallel,
                self.num_envs,
                self.seed,
                address=address,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=resources,
                ray_remote_args=ray_remote_args,
                per_actor_resources=_per_actor_resources,
                timeout=timeout,
                max_retries=max_retries,
            )
            backend = self._pool
        elif self.num_parallel == 1:
            self._engine = BatchEngine(
                env_fn,
                range(self.num_envs),
                self.seed,
                engine_rng_seed(self.seed, 0),
                # a factory of VectorEnv in this process: its size is the number of slots
                vector_size_from_env=self.num_envs == 1,
            )
            self.num_envs = len(self._engine.slot_ids)
            backend = self._engine
        else:
            self._pool = WorkerPool(
                WithParentRegistry(env_fn),
                self.num_parallel,
                self.num_envs,
                self.seed,
                timeout=timeout,
            )
            backend = self._pool
        self.observation_space = backend.observation_space
        self.action_space = backend.action_space
        try:
            if prepro is None and isinstance(
                self.observation_space, (gymnasium.spaces.Dict, gymnasium.spaces.Tuple)
            ):
                raise dict_obs_error(self.observation_space)
            check_pol_spaces(pol, self.observation_space, self.action_space, prepro is None)
        except (TypeError, ValueError):
            self._shut(close_env=not self._borrowed_env)
            raise

    def sample(
        self,
        pol: torch.nn.Module,
        max_epis: int | None = None,
        max_steps: int | None = None,
        deterministic: bool = False,
    ) -> list[Episode]:
        """Sample whole episodes.

        The budgets are split as evenly as possible over all ``num_parallel * num_envs``
        environment slots. A slot begins a new episode only while it is under both of its
        quotas, counting the steps of its episode in progress; episodes already begun are
        always finished and returned, so the sample is not biased toward short episodes.

        Parameters
        ----------
        pol : torch.nn.Module
            The policy to act with (its current weights are sent to the workers).
        max_epis : int, optional
            Number of episodes; exact when it is the only budget.
        max_steps : int, optional
            Minimum total number of steps.
        deterministic : bool
            Act with ``pol.deterministic_ac_real`` (the distribution's mode).

        Returns
        -------
        epis : list of dict
            Whole episodes, ordered by environment slot and then by start. Keys: ``obs``
            (T, *ob_shape) float32, ``acs`` (T, *ac_shape), ``rews`` (T,) float32,
            ``next_obs`` (T, *ob_shape) float32, ``terms``, ``truncs``, ``dones`` (T,) bool,
            ``a_is`` dict of (T, ...) arrays, ``e_is`` dict of (T, ...) arrays. The arrays
            of one call's episodes are slices of columns they share (one array per key), so
            no per-episode copies are made.

        Raises
        ------
        ValueError
            When neither budget is given, or ``pol`` does not fit the environment.
        RuntimeError
            When an environment raises or returns a non-finite observation or reward (naming
            its index, seed and step, chained to the original exception); when the policy
            returns non-finite actions or invalid probabilities (naming the policy and the
            environment it acted in, also when the environment failed on them first); when
            a worker dies or does not answer within ``timeout``. Nothing is returned or
            stored then, and the sampler stays usable: a dead or killed worker is replaced
            at the next call.
        ValueError
            When a policy without spaces returns actions of a shape other than the
            environment's action space's.
        """
        if self._closed:
            raise RuntimeError("this EpiSampler is closed; create a new one")
        max_epis = _check_budget("max_epis", max_epis)
        max_steps = _check_budget("max_steps", max_steps)
        if max_epis is None and max_steps is None:
            raise ValueError("sample: give max_epis or max_steps (or both), given neither")
        if not callable(pol):
            raise TypeError(f"pol: expected a policy (a callable torch module), given {pol!r}")
        check_pol_spaces(pol, self.observation_space, self.action_space, self.prepro is None)
        quotas = split_quotas(max_epis, max_steps, self.num_parallel, self.num_envs)
        if self._engine is not None:
            task = SampleTask(
                pol, bool(deterministic), self.prepro, self.fast_inference, self.max_episode_steps
            )
            return unpack_episodes(self._engine.run_task(task, quotas[0]))
        task = SampleTask(
            _cpu_policy(pol),
            bool(deterministic),
            self.prepro,
            self.fast_inference,
            self.max_episode_steps,
        )
        return self._pool.sample(task, quotas)

    def state_dict(self) -> dict[str, Any]:
        """Everything that makes the next ``sample`` call exact, from every engine (this
        process's, each worker's or each Ray actor's): the policy's torch RNG, each
        environment's RNG (``env.unwrapped.np_random``, as JSON text) and whether each slot's
        seeded first reset already happened. No pickle: arrays, strings, numbers (what
        ``machina.checkpoint.save_run`` stores).

        Between two ``sample`` calls no environment is mid-episode (each call resets the
        slots it uses), so a new ``EpiSampler`` with the same ``env``, ``num_parallel``,
        ``num_envs`` and ``backend`` plus ``load_state_dict`` continues exactly (the saved
        seeds are restored too): ``load_state_dict`` replays the seeded first reset of each
        fresh environment whose saved one had it, on its innermost environment (no wrapper
        sees it), for environments whose first reset leaves state the later episodes depend
        on (PyBullet's walkers). State an environment keeps outside ``np_random`` (its
        own ``random`` module use, a simulator's internal seed) or changes at every episode is
        not captured.
        """
        if self._closed:
            raise RuntimeError("this EpiSampler is closed; create a new one")
        engines = [self._engine.state_dict()] if self._engine is not None else None
        if engines is None:
            engines = self._pool.state_dict()
        return {
            "format": "machina-episampler",
            "version": 1,
            "num_parallel": self.num_parallel,
            "num_envs": self.num_envs,
            "engines": engines,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s result into this sampler (same ``num_parallel`` and
        ``num_envs``).

        Raises
        ------
        ValueError
            When ``state`` is not an EpiSampler state or its layout differs from this one's.
        """
        if self._closed:
            raise RuntimeError("this EpiSampler is closed; create a new one")
        if not isinstance(state, dict) or state.get("format") != "machina-episampler":
            raise ValueError("state: expected the result of EpiSampler.state_dict()")
        layout = (state["num_parallel"], state["num_envs"])
        if layout != (self.num_parallel, self.num_envs):
            raise ValueError(
                f"state: saved with num_parallel={layout[0]}, num_envs={layout[1]}; this "
                f"sampler has num_parallel={self.num_parallel}, num_envs={self.num_envs}"
            )
        if self._engine is not None:
            self._engine.load_state_dict(state["engines"][0])
        else:
            self._pool.load_state_dict(state["engines"])

    def close(self) -> None:
        """Stop the worker processes (or Ray actors, and the Ray instance this sampler
        started) and close the environments. Idempotent."""
        self._shut(close_env=True)

    def _shut(self, close_env: bool) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.close()
        if self._engine is not None and close_env:
            self._engine.close()

    def __enter__(self) -> EpiSampler:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._shut(close_env=not self._borrowed_env)
        except Exception:
            pass
