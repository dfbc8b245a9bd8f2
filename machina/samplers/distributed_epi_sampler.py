"""``DistributedEpiSampler``: machina 0.x's multi-node sampler (its name and arguments), on Ray.

The nodes join a Ray cluster (``ray start --head`` on the first, ``ray start
--address=HEAD:6379`` on the others) and the master (``rank=-1``) alone creates the sampler;
its actors spread over the nodes (machina 0.x's Redis-connected node processes, ``rank``
0..world_size-1, are not needed)::

    sampler = DistributedEpiSampler(
        world_size=2, env=env, pol=pol, num_parallel=8, address="HEAD:6379"
    )  # or RAY_ADDRESS=HEAD:6379 in the environment
    epis = sampler.sample(pol, max_steps=4096)

``world_size`` is the number of nodes: the ``num_parallel`` actors are ``num_parallel //
world_size`` per node (at least one), spread by Ray's ``"SPREAD"`` strategy.

Without a cluster to join (no ``address``, no ``RAY_ADDRESS``, no Ray initialised in this
process), without Ray-only arguments given other values than their defaults (``num_cpus``,
``num_gpus``, ``resources``, ``ray_remote_args``, ``max_retries``) and without a ``timeout``
on a single sampler (which only a Ray actor can honour), the samplers run on this machine
as :class:`EpiSampler`'s worker processes (in this process for one): the episodes a
private one-machine Ray would give (the backends draw the same episodes for the same seed),
without starting Ray, whose processes are this process's children and whose loss (a signal
sent to them) ends this process.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch

from machina.samplers._task import Episode
from machina.samplers.epi_sampler import RAY_ONLY_DEFAULTS, EpiSampler

__all__ = ["DistributedEpiSampler"]

# Another value than these defaults asks for Ray: EpiSampler's Ray-only arguments.
_RAY_ONLY = RAY_ONLY_DEFAULTS


def _ray_cluster_given(kwargs: dict[str, Any]) -> bool:
    """Whether there is a Ray to sample on, or Ray-only arguments ask for one."""
    if os.environ.get("RAY_ADDRESS"):
        return True
    if any(name in kwargs and kwargs[name] != default for name, default in _RAY_ONLY.items()):
        return True
    if any(name.startswith("_") for name in kwargs):  # EpiSampler's private Ray arguments
        return True
    ray = sys.modules.get("ray")  # never imported: never initialised
    return ray is not None and ray.is_initialized()


class DistributedEpiSampler:
    """Sample whole episodes over the nodes of a Ray cluster.

    Parameters
    ----------
    world_size : int
        Number of nodes.
    rank : int
        -1 (the default): the master, which samples. A rank >= 0 (machina 0.x's node
        process) samples nothing (``sample`` raises) and a warning says so: a node joins
        the cluster with ``ray start --address=...`` instead.
    env, pol : required on the master
        As :class:`machina.samplers.EpiSampler`'s.
    num_parallel : int
        Actors in total: ``num_parallel // world_size`` per node (at least one), spread over
        the nodes by Ray.
    prepro, seed : as :class:`machina.samplers.EpiSampler`'s.
    flush_db : bool
        machina 0.x's Redis reset; accepted and ignored (no Redis).
    **kwargs
        More arguments of :class:`machina.samplers.EpiSampler` (``num_envs``, ``address``,
        ``num_cpus``, ``timeout``...).

    Attributes
    ----------
    backend : str or None
        ``"ray"``, or ``"process"`` when there is no Ray cluster to join (see the module's
        docstring; a warning says so when ``world_size > 1``); None for a rank >= 0.
    """

    def __init__(
        self,
        world_size: int,
        rank: int = -1,
        env: gymnasium.Env | Callable[[], gymnasium.Env] | None = None,
        pol: torch.nn.Module | None = None,
        num_parallel: int = 8,
        prepro: Callable[[np.ndarray], np.ndarray] | None = None,
        seed: int | None = 256,
        flush_db: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size: expected a positive integer, given {world_size!r}")
        self.world_size = world_size
        self.rank = rank
        self.backend: str | None = None
        self._sampler: EpiSampler | None = None
        if rank >= 0:
            warnings.warn(
                "DistributedEpiSampler(rank >= 0): on Ray a node joins the cluster with "
                "`ray start --address=<head>:6379`; no per-node sampler process is needed",
                stacklevel=2,
            )
            return
        if env is None or pol is None:
            raise ValueError("env, pol: the master (rank=-1) needs both, given None")
        per_node = max(1, num_parallel // world_size)
        total = per_node * world_size
        backend = "ray"
        if not _ray_cluster_given(kwargs) and (total > 1 or kwargs.get("timeout") is None):
            backend = "process"  # one machine: no Ray to start (module docstring)
            if world_size > 1:
                warnings.warn(
                    f"DistributedEpiSampler(world_size={world_size}): no Ray cluster to join "
                    "(no address, RAY_ADDRESS or initialised Ray); the "
                    f"{total} samplers run as processes on this machine",
                    stacklevel=2,
                )
        self._sampler = EpiSampler(
            env,
            pol,
            num_parallel=total,
            prepro=prepro,
            seed=seed,
            backend=backend,
            **kwargs,
        )
        self.backend = backend

    def sample(
        self,
        pol: torch.nn.Module,
        max_epis: int | None = None,
        max_steps: int | None = None,
        deterministic: bool = False,
    ) -> list[Episode]:
        """Sample whole episodes on the master (see :meth:`EpiSampler.sample`)."""
        if self._sampler is None:
            raise RuntimeError(
                f"DistributedEpiSampler(rank={self.rank}) is not the master: sample with rank=-1"
            )
        return self._sampler.sample(pol, max_epis, max_steps, deterministic)

    def close(self) -> None:
        """Stop the worker processes or Ray actors (and a Ray instance the sampler started)."""
        if self._sampler is not None:
            self._sampler.close()

    def __enter__(self) -> DistributedEpiSampler:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _node_main(argv: list[str] | None = None) -> int:
    """machina 0.x's node command (``python -m machina.samplers.distributed_epi_sampler
    --world_size W --rank R --redis_host H --redis_port P``): on Ray a node joins the cluster
    with ``ray start --address=HEAD:6379`` instead, so this only says so and exits."""
    import argparse

    parser = argparse.ArgumentParser(description=(_node_main.__doc__ or "").split("\n")[0])
    parser.add_argument("--world_size", type=int, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--redis_host", default="localhost", help="ignored: no Redis")
    parser.add_argument("--redis_port", default="6379", help="ignored: no Redis")
    parser.add_argument("--flush_db", action="store_true", help="ignored: no Redis")
    args = parser.parse_args(argv)
    print(
        f"DistributedEpiSampler node {args.rank} of {args.world_size}: machina samples on Ray; "
        "join this machine to the cluster with `ray start --address=<head>:6379` (nothing "
        "else runs here)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_node_main())
