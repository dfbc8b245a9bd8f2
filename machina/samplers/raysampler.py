"""machina 0.x's Ray sampler, ``machina.samplers.raysampler.EpiSampler`` (its name and
arguments), on the engine of :class:`machina.samplers.EpiSampler` with ``backend="ray"``.

Scripts written for machina 0.x keep working::

    sampler = EpiSampler(env, pol, num_parallel=8, seed=256, node_info={"node1": 4})
    sampler.set_pol_state(pol.state_dict())          # or sample(pol, ...)
    epis = sampler.sample(max_steps=4096)

Each of the ``num_parallel`` Ray actors steps one environment by default; give ``num_envs``
to step more per actor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import gymnasium
import numpy as np
import torch

from machina.samplers._original import BaseSampleWorker, DefaultSampleWorker, WorkerSampling
from machina.samplers._task import Episode
from machina.samplers.epi_sampler import EpiSampler as _LocalEpiSampler

__all__ = ["EpiSampler", "BaseSampleWorker", "DefaultSampleWorker", "LARGE_NUMBER"]

# 0.x's stand-in for "no limit" (kept for scripts that read it; sample() needs no number).
LARGE_NUMBER = 100000000


class EpiSampler:
    """Sample whole episodes with Ray actors, keeping a copy of the policy to act with.

    Parameters
    ----------
    env : gymnasium.Env, GymEnv or callable
        The environment, copied once per slot, or a zero-argument factory.
    pol : torch.nn.Module
        The policy; a CPU copy is kept and its weights are updated by :meth:`set_pol_state`
        (or :meth:`set_pol`, or passing a policy to :meth:`sample`).
    num_parallel : int
        Number of Ray actors.
    prepro : callable, optional
        As :class:`machina.samplers.EpiSampler`'s.
    seed : int or None
        As :class:`machina.samplers.EpiSampler`'s.
    worker_cls : type, optional
        None (default): every actor runs machina's sampling engine. A subclass of
        :class:`BaseSampleWorker` (machina 0.x's custom worker): ``num_parallel`` actors of
        it are started, each running its ``one_epi`` once per episode, as 0.x did. Then
        ``seed`` only seeds each actor's global RNGs (``seed + worker_id``, as 0.x): which
        actor runs which episode depends on their timing, so episodes are not reproducible
        as machina's engine makes them. With it, ``timeout=`` (the one keyword it takes)
        limits each wait for an episode; an actor's start (and a replacement's) is awaited
        first, up to ``max(timeout, 60)`` s.
    node_info : dict or None
        ``{resource_name: count}``: ``count`` actors each reserve one unit of the custom
        resource ``resource_name`` (a node started with ``ray start
        --resources='{"node1": 100}'``), the others are placed by Ray (spread over nodes).
    **kwargs
        More arguments of :class:`machina.samplers.EpiSampler` (``num_envs``, ``address``,
        ``num_cpus``, ``timeout``...). ``num_cpus`` defaults to 0 here, as machina 0.x's
        actors reserved no CPU: a Ray started with fewer CPUs than ``num_parallel`` (0.x's
        ``init_ray`` then ``EpiSampler(env, pol, 8)``) still places them all.
    """

    def __init__(
        self,
        env: gymnasium.Env | Callable[[], gymnasium.Env],
        pol: torch.nn.Module,
        num_parallel: int = 8,
        prepro: Callable[[np.ndarray], np.ndarray] | None = None,
        seed: int | None = 256,
        worker_cls: type[BaseSampleWorker] | None = None,
        node_info: Mapping[str, int] | None = MappingProxyType({}),
        **kwargs: Any,
    ) -> None:
        if worker_cls is not None and not (
            isinstance(worker_cls, type) and issubclass(worker_cls, BaseSampleWorker)
        ):
            raise ValueError(
                "worker_cls: expected None or a subclass of "
                f"machina.samplers.raysampler.BaseSampleWorker, given {worker_cls!r}"
            )
        per_actor: list[dict[str, float]] = []
        for name, count in (node_info or {}).items():
            per_actor += [{name: 1}] * int(count)
        if len(per_actor) > num_parallel:
            raise ValueError(
                f"node_info: asks for {len(per_actor)} actors in total, more than "
                f"num_parallel={num_parallel}"
            )
        self.pol = copy.deepcopy(pol).cpu()
        self._workers: WorkerSampling | None = None
        if worker_cls is not None:
            unused = sorted(set(kwargs) - {"timeout"})
            if unused:
                raise ValueError(
                    f"{', '.join(unused)}: not used with worker_cls (each of its actors steps "
                    f"one environment); only timeout= is, given worker_cls={worker_cls!r}"
                )
            self._workers = WorkerSampling(
                env,
                self.pol,
                num_parallel,
                prepro,
                seed,
                worker_cls,
                per_actor,
                timeout=kwargs.get("timeout"),
            )
            return
        kwargs.setdefault("num_cpus", 0)
        self._sampler = _LocalEpiSampler(
            env,
            self.pol,
            num_parallel=num_parallel,
            prepro=prepro,
            seed=seed,
            backend="ray",
            _per_actor_resources=per_actor,
            **kwargs,
        )

    def set_pol(self, pol: torch.nn.Module) -> None:
        """Act with (a CPU copy of) ``pol`` from now on."""
        self.pol = copy.deepcopy(pol).cpu()
        if self._workers is not None:
            self._workers.set_pol(self.pol)

    def set_pol_state(self, state_dict: dict[str, Any]) -> None:
        """Load ``state_dict`` into the policy the sampler acts with."""
        self.pol.load_state_dict(state_dict)
        if self._workers is not None:
            self._workers.set_pol_state(state_dict)

    def sample(
        self,
        pol: torch.nn.Module | None = None,
        max_epis: int | None = None,
        max_steps: int | None = None,
        deterministic: bool = False,
    ) -> list[Episode]:
        """Sample whole episodes (see :meth:`machina.samplers.EpiSampler.sample`).

        Parameters
        ----------
        pol : torch.nn.Module, optional
            When given, its weights are loaded first (as ``set_pol_state``).
        """
        if pol is not None:
            self.set_pol_state({k: v.detach().cpu() for k, v in pol.state_dict().items()})
        if self._workers is None:
            return self._sampler.sample(self.pol, max_epis, max_steps, deterministic)
        if max_epis is None and max_steps is None:
            raise ValueError("max_epis, max_steps: give at least one, given None and None")
        return self._workers.sample(
            LARGE_NUMBER if max_epis is None else max_epis,
            LARGE_NUMBER if max_steps is None else max_steps,
            deterministic,
        )

    def state_dict(self) -> dict[str, Any]:
        """The policy the sampler acts with and every actor's RNG state
        (:meth:`machina.samplers.EpiSampler.state_dict`), for a checkpoint.

        Raises
        ------
        ValueError
            With ``worker_cls``: which actor runs which episode depends on timing, so there
            is no state to continue exactly from.
        """
        self._check_engine("state_dict")
        return {"pol": copy.deepcopy(self.pol.state_dict()), "sampler": self._sampler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result (as ``machina.samplers.EpiSampler``'s, into a
        sampler of the same ``num_parallel`` and ``num_envs``)."""
        self._check_engine("load_state_dict")
        self._sampler.load_state_dict(state["sampler"])
        self.pol.load_state_dict(state["pol"])

    def _check_engine(self, method: str) -> None:
        if self._workers is not None:
            raise ValueError(
                f"EpiSampler.{method}: not available with worker_cls (its actors take "
                "episodes as they finish: a run on them cannot continue exactly)"
            )

    def close(self) -> None:
        """Stop the actors (and the Ray instance the sampler started)."""
        if self._workers is not None:
            self._workers.close()
        else:
            self._sampler.close()

    def __enter__(self) -> EpiSampler:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
