"""machina 0.x's sampling functions and Ray workers, for ported scripts.

``one_epi`` / ``mp_sample`` (``machina.samplers.epi_sampler``) and ``BaseSampleWorker`` /
``DefaultSampleWorker`` (``machina.samplers.raysampler``) keep 0.x's names, signatures and
episode dicts (``obs``, ``acs``, ``rews``, ``dones``, ``a_is``, ``e_is``, float32), on
gymnasium's ``reset() -> (obs, info)`` / ``step() -> (obs, rew, terminated, truncated,
info)``: ``dones`` is ``terminated or truncated`` and the episodes also carry ``terms`` and
``truncs`` as :class:`machina.samplers.EpiSampler`'s do. machina's own samplers do not use
them (they run the batched engine); they serve scripts that call them directly.
"""

from __future__ import annotations

import inspect
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from machina.pols.base import BasePol
from machina.samplers._buffers import SampledEpisode
from machina.samplers._ray_backend import join_owned_ray, own_started_ray, release_owned_ray
from machina.utils.device import cpu_mode
from machina.utils.tensors import to_numpy

__all__ = ["BaseSampleWorker", "DefaultSampleWorker", "mp_sample", "one_epi"]


def _numbers(infos: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """``e_is``: the info keys every step has and whose values are numbers, as float32."""
    if not infos:
        return {}
    out = {}
    for key in infos[0]:
        if not all(key in info for info in infos):
            continue
        try:
            out[key] = np.array([info[key] for info in infos], dtype=np.float32)
        except (TypeError, ValueError):  # gymnasium infos may hold strings, dicts...
            continue
    return out


def _one_row(value: torch.Tensor, shape: tuple[int, ...] | None, rnn: bool) -> np.ndarray:
    """One step's policy output without its batch axis of 1 (and a recurrent policy's time
    axis of 1)."""
    a = to_numpy(value, bfloat16_as_float32=True)
    if shape is not None:
        return a.squeeze().reshape(shape)
    for _ in range(2 if rnn else 1):
        a = a[0] if a.ndim and a.shape[0] == 1 else a
    return a


def one_epi(
    env: Any,
    pol: Any,
    deterministic: bool = False,
    prepro: Callable[[Any], Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Sample one episode with ``pol`` in ``env`` (machina 0.x's ``one_epi``).

    Parameters
    ----------
    env : gymnasium.Env
    pol : Pol
        Called as ``pol(obs)`` (``pol.deterministic_ac_real(obs)`` when ``deterministic``),
        returning ``(ac_real, ac, a_i)``.
    deterministic : bool
    prepro : callable, optional
        Applied to each observation before the policy sees it.

    Returns
    -------
    epi_length : int
        Number of steps T.
    epi : dict
        ``obs`` (T, *obs_shape), ``acs`` (T, *ac_shape), ``rews``, ``dones``, ``terms``,
        ``truncs`` (T,), all float32; ``a_is``: ``{key: (T, ...)}`` from the policy,
        ``e_is``: ``{key: (T,)}`` from the numeric entries of the step infos.
    """
    if prepro is None:

        def prepro(x: Any) -> Any:
            return x

    ac_shape = pol.action_space.shape
    # a 0.x policy's outputs are reshaped to its a_i_shape; machina's have that attribute
    # for 0.x's code, but their outputs (a mixture's (K, d) means) keep their own shapes
    a_i_shape = None if isinstance(pol, BasePol) else getattr(pol, "a_i_shape", None)
    obs, acs, rews, terms, truncs, a_is, e_is = [], [], [], [], [], [], []
    with cpu_mode(), torch.no_grad():
        o, _ = env.reset()
        pol.reset()
        while True:
            o = prepro(o)
            ob = torch.tensor(np.asarray(o), dtype=torch.float)
            if deterministic:
                ac_real, ac, a_i = pol.deterministic_ac_real(ob)
            else:
                ac_real, ac, a_i = pol(ob)
            ac_real = ac_real.reshape(ac_shape)
            next_o, r, term, trunc, e_i = env.step(np.array(ac_real))
            obs.append(o)
            rews.append(r)
            terms.append(bool(term))
            truncs.append(bool(trunc))
            acs.append(to_numpy(ac.squeeze(), bfloat16_as_float32=True).reshape(ac_shape))
            step_a_i: dict[str, Any] = {}
            for key, value in a_i.items():
                if value is None:
                    continue
                if isinstance(value, tuple):  # recurrent state (h, c)
                    step_a_i[key] = tuple(
                        to_numpy(h.squeeze(), bfloat16_as_float32=True) for h in value
                    )
                else:
                    step_a_i[key] = _one_row(value, a_i_shape, bool(getattr(pol, "rnn", False)))
            a_is.append(step_a_i)
            e_is.append(e_i)
            if term or trunc:
                break
            o = next_o
    terms_a = np.array(terms, dtype=np.float32)
    truncs_a = np.array(truncs, dtype=np.float32)
    epi = dict(
        obs=np.array(obs, dtype=np.float32),
        acs=np.array(acs, dtype=np.float32),
        rews=np.array(rews, dtype=np.float32),
        dones=np.maximum(terms_a, truncs_a),
        terms=terms_a,
        truncs=truncs_a,
        a_is={k: np.array([a[k] for a in a_is], dtype=np.float32) for k in a_is[0]},
        e_is=_numbers(e_is),
    )
    return len(rews), epi


def mp_sample(
    pol: Any,
    env: Any,
    max_steps: torch.Tensor,
    max_epis: torch.Tensor,
    n_steps_global: torch.Tensor,
    n_epis_global: torch.Tensor,
    epis: Any,
    exec_flag: torch.Tensor,
    deterministic_flag: torch.Tensor,
    process_id: int,
    prepro: Callable[[Any], Any] | None = None,
    seed: int = 256,
) -> None:
    """machina 0.x's sampling process body: runs until the process is terminated.

    Every 0.1 s it looks at ``exec_flag``; when positive, it samples episodes with
    :func:`one_epi` into ``epis`` (a ``multiprocessing.Manager().list()``) while the shared
    counters ``n_steps_global`` / ``n_epis_global`` (0-d tensors in shared memory) are below
    ``max_steps`` / ``max_epis``, then zeroes ``exec_flag``. Seeds numpy and torch with
    ``seed + process_id``. The parent ends the process (``Process.terminate()``).
    """
    np.random.seed(seed + process_id)  # noqa: NPY002 - 0.x seeded the global state
    torch.manual_seed(seed + process_id)
    torch.set_num_threads(1)
    while True:
        time.sleep(0.1)
        if exec_flag > 0:
            while max_steps > n_steps_global and max_epis > n_epis_global:
                length, epi = one_epi(env, pol, bool(deterministic_flag), prepro)
                n_steps_global += length
                n_epis_global += 1
                epis.append(epi)
            exec_flag.zero_()


class BaseSampleWorker(ABC):
    """machina 0.x's Ray sampling worker: subclass it and define ``one_epi``.

    Pass the subclass as ``worker_cls`` to :class:`machina.samplers.raysampler.EpiSampler`;
    each of its Ray actors then runs ``one_epi(deterministic)`` once per episode.

    Parameters
    ----------
    pol : Pol
    env : gymnasium.Env
    seed : int or None
        numpy and torch are seeded with ``seed + worker_id`` (not at all when None).
    worker_id : int
    prepro : callable, optional
    """

    def __init__(
        self,
        pol: Any,
        env: Any,
        seed: int | None,
        worker_id: int,
        prepro: Callable[[Any], Any] | None = None,
    ) -> None:
        self.set_pol(pol)
        self.env = env
        self.worker_id = worker_id
        if seed is not None:
            # the global state, as 0.x: users' one_epi may draw from np.random
            np.random.seed(seed + worker_id)  # noqa: NPY002
            torch.manual_seed(seed + worker_id)
        torch.set_num_threads(1)
        self.prepro = prepro if prepro is not None else (lambda x: x)

    def set_pol(self, pol: Any) -> None:
        """Act with ``pol`` (put in eval mode)."""
        self.pol = pol
        self.pol.eval()

    def set_pol_state(self, state_dict: Mapping[str, Any]) -> None:
        """Load ``state_dict`` into the policy."""
        self.pol.load_state_dict(state_dict)

    @classmethod
    def as_remote(cls, resources: dict[str, float] | None = None) -> Any:
        """This class as a Ray actor class needing no CPU (as 0.x: more actors than CPUs
        with custom ``resources`` would otherwise wait forever) and ``resources``."""
        import ray

        if resources:
            return ray.remote(num_cpus=0, resources=resources)(cls)
        return ray.remote(num_cpus=0)(cls)

    @abstractmethod
    def one_epi(self) -> tuple[int, dict[str, Any]]:
        """Sample one episode.

        Returns
        -------
        epi_length : int
            Number of steps of the episode.
        episode : dict
            e.g. ``{"obs": ..., "rews": ..., ...}``.
        """


class DefaultSampleWorker(BaseSampleWorker):
    """A :class:`BaseSampleWorker` whose ``one_epi`` is :func:`one_epi`."""

    def one_epi(self, deterministic: bool = False) -> tuple[int, dict[str, Any]]:  # type: ignore[override]
        return one_epi(self.env, self.pol, deterministic, self.prepro)


def takes_deterministic(worker_cls: Any) -> bool:
    """Whether ``worker_cls.one_epi`` accepts an argument (0.x always passed one)."""
    params = list(inspect.signature(worker_cls.one_epi).parameters.values())[1:]
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )


class WorkerSampling:
    """0.x's Ray sampling loop over ``num_parallel`` actors of a user's ``worker_cls``.

    Starts a local Ray (and shuts it down in :meth:`close`) when none is running.
    """

    def __init__(
        self,
        env: Any,
        pol: Any,
        num_parallel: int,
        prepro: Callable[[Any], Any] | None,
        seed: int | None,
        worker_cls: type,
        per_actor: list[dict[str, float]],
        timeout: float | None = None,
    ) -> None:
        import ray

        self.ray = ray
        self.timeout = timeout
        # machina's Ray instance is shared by its samplers, this one included: the last to
        # close shuts it down (an instance of the user's own is never shut down)
        if ray.is_initialized():
            self.started_ray = join_owned_ray()
        else:
            ray.init(
                address="local",
                num_cpus=max(1, num_parallel),
                include_dashboard=False,
                log_to_driver=False,
            )
            own_started_ray(max(1, num_parallel))
            self.started_ray = True
        self.pass_deterministic = takes_deterministic(worker_cls)
        self._worker_cls, self._seed, self._prepro = worker_cls, seed, prepro
        # what a replacement worker is made from: the current policy and its latest weights
        self._pol_ref, self._env_ref = ray.put(pol), ray.put(env)
        self._state_ref: Any = None
        self._resources = per_actor + [{}] * (num_parallel - len(per_actor))
        self.workers = [self._new_worker(i) for i in range(num_parallel)]
        self._await_started(self.workers)

    def _await_started(self, workers: list[Any]) -> None:
        """Wait (up to ``max(timeout, 60)`` s) for ``workers``' processes to start, so that
        ``timeout`` times episodes, not a cold start (9 s beside a busy core). Without a
        timeout there is nothing to wait for; a worker still starting after the wait is
        left to the next call's timeout."""
        if self.timeout is None:
            return
        ray = self.ray
        try:
            ray.get([w.__ray_ready__.remote() for w in workers], timeout=max(self.timeout, 60.0))
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            pass  # a dead or unplaced worker: the call that uses it names it

    def _new_worker(self, index: int) -> Any:
        cls = self._worker_cls.as_remote(resources=self._resources[index] or None)  # type: ignore[attr-defined]
        worker = cls.remote(self._pol_ref, self._env_ref, self._seed, index, self._prepro)
        if self._state_ref is not None:
            worker.set_pol_state.remote(self._state_ref)  # runs before any later call
        return worker

    def _replace(self, *indices: int) -> None:
        """Kill the workers ``indices`` (stuck or dead) and start new ones in their places,
        awaiting their starts together."""
        for index in indices:
            try:
                self.ray.kill(self.workers[index], no_restart=True)
            except Exception:  # already gone
                pass
            self.workers[index] = self._new_worker(index)
        self._await_started([self.workers[index] for index in indices])

    def set_pol(self, pol: Any) -> None:
        self._pol_ref, self._state_ref = self.ray.put(pol), None
        self._on_every_worker("set_pol", self._pol_ref)

    def set_pol_state(self, state_dict: Mapping[str, Any]) -> None:
        self._state_ref = self.ray.put(dict(state_dict))
        self._on_every_worker("set_pol_state", self._state_ref)

    def _on_every_worker(self, method: str, ref: Any) -> None:
        """Call ``method(ref)`` on every worker; a worker that died (between two calls, say)
        or does not answer within ``timeout`` is replaced by one that already holds the
        current policy, with a warning naming it."""
        ray = self.ray
        calls = [getattr(w, method).remote(ref) for w in self.workers]
        lost = []
        for index, call in enumerate(calls):
            try:
                ray.get(call, timeout=self.timeout)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                lost.append(index)
        if lost:
            self._replace(*lost)
            warnings.warn(
                f"raysampler workers {lost} (seed {self._seed}) died or did not answer "
                f"{method}; new workers replace them",
                RuntimeWarning,
                stacklevel=3,
            )

    def sample(self, max_epis: int, max_steps: int, deterministic: bool) -> list[dict[str, Any]]:
        """Episodes from the workers until ``max_steps`` steps or ``max_epis`` episodes."""
        ray = self.ray

        def launch(w: Any) -> Any:
            return (
                w.one_epi.remote(deterministic) if self.pass_deterministic else w.one_epi.remote()
            )

        epis: list[dict[str, Any]] = []
        n_steps = 0
        first = range(max(1, min(len(self.workers), max_epis)))
        pending = {launch(self.workers[i]): i for i in first}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.timeout)
            if not ready:
                stuck = sorted(pending.values())
                self._replace(*stuck)
                raise TimeoutError(
                    f"raysampler workers {stuck} (seed {self._seed}) did not finish an episode "
                    f"within timeout={self.timeout} s: killed; new workers replace them, so the "
                    "next sample call works"
                )
            index = pending.pop(ready[0])
            try:
                length, epi = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                self._replace(index)
                raise RuntimeError(
                    f"raysampler worker {index} (seed {self._seed}) died during one_epi; a new "
                    "worker replaces it, so the next sample call works"
                ) from exc
            epis.append(SampledEpisode(epi) if type(epi) is dict else epi)
            n_steps += length
            if n_steps < max_steps and len(epis) + len(pending) < max_epis:
                pending[launch(self.workers[index])] = index
        return epis

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []
        if self.started_ray:
            self.started_ray = False
            release_owned_ray(self.ray)
